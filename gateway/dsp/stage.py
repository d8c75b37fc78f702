"""The DSP stage: samples queue in, feature frames out.

Consumes ``SampleBlock``s (framed per channel, features per window) and ``Reading``s (value and
rate of change); emits one ``FeatureFrame`` per window or reading. Framing state lives in the
stage object, so a restart after a crash keeps it. Drains its input on close, then returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from gateway.config.plant import Channel
from gateway.core.clock import Clock
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.dsp import features as F
from gateway.dsp.config import DspConfig
from gateway.dsp.framing import Framer
from gateway.runtime.queues import BoundedQueue, QueueClosed

log = logging.getLogger(__name__)

FrameCallback = Callable[[FeatureFrame], None]


class DspStage:
    name = "dsp"

    def __init__(
        self,
        cfg: DspConfig,
        channels: dict[str, Channel],
        asset_of: dict[str, str],
        inp: BoundedQueue[SampleBlock | Reading],
        out: BoundedQueue[FeatureFrame],
        clock: Clock,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self.cfg, self.channels, self.asset_of = cfg, channels, asset_of
        self.inp, self.out, self.clock, self.on_frame = inp, out, clock, on_frame
        self.framers = {
            c: Framer(cfg.window, cfg.hop) for c, ch in channels.items() if ch.is_waveform
        }
        self._last: dict[str, Reading] = {}
        self.frames = 0

    def status(self) -> dict[str, object]:
        return {"frames": self.frames, "gaps": {c: f.gaps for c, f in self.framers.items()}}

    async def run(self) -> None:
        while True:
            try:
                items = await self.inp.get_many(64)
            except QueueClosed:
                return
            for item in items:
                for frame in self.process(item):
                    await self.out.put(frame)
                    self.frames += 1
                    if self.on_frame is not None:
                        self.on_frame(frame)

    def process(self, item: SampleBlock | Reading) -> list[FeatureFrame]:
        """Pure step: the frames ``item`` completes (no I/O)."""
        if isinstance(item, SampleBlock):
            return self._block(item)
        return [self._reading(item)]

    def _block(self, block: SampleBlock) -> list[FeatureFrame]:
        framer = self.framers.get(block.channel)
        if framer is None:
            return []
        w = framer.push(block)
        if w is None:
            return []
        values = F.time_domain(w.data)
        ch = self.channels[block.channel]
        names = tuple(n for n, _ in F.TIME_DOMAIN)
        units = F.units_for(F.TIME_DOMAIN, ch.unit)
        span = round(self.cfg.window / w.sample_rate_hz * 1e9)
        now = self.clock.now_ns()
        asset = self.asset_of[block.channel]
        return [
            FeatureFrame(
                asset,
                block.channel,
                int(t),
                int(t) + span,
                now,
                F.SCHEMA_VERSION,
                names,
                units,
                row,
                w.quality,
            )
            for t, row in zip(w.start_ts_ns, values, strict=True)
        ]

    def _reading(self, r: Reading) -> FeatureFrame:
        prev = self._last.get(r.channel)
        rate = 0.0
        if prev is not None and r.source_ts_ns > prev.source_ts_ns and prev.quality != Quality.BAD:
            rate = (r.value - prev.value) / ((r.source_ts_ns - prev.source_ts_ns) / 60e9)
        if r.quality != Quality.BAD:
            self._last[r.channel] = r
        ch = self.channels[r.channel]
        return FeatureFrame(
            self.asset_of[r.channel],
            r.channel,
            r.source_ts_ns,
            r.source_ts_ns,
            self.clock.now_ns(),
            F.SCHEMA_VERSION,
            tuple(n for n, _ in F.SCALAR),
            F.units_for(F.SCALAR, ch.unit),
            np.array([r.value, rate]),
            r.quality,
        )
