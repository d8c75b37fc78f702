"""The DSP stage: samples queue in, feature frames out.

Consumes ``SampleBlock``s (framed per channel, features per window) and ``Reading``s (value and
rate of change; a reading of an asset's speed channel also sets the shaft speed used for order
and bearing features). Emits one ``FeatureFrame`` per window or reading.

The numeric work of each batch runs on the stage's own worker thread (numpy and scipy.fft release
the GIL), so the event loop stays responsive; batches are awaited one at a time, so framing state
is only ever touched by one thread. State lives in the stage object and survives a restart.
Drains its input on close, then returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gateway.config.plant import Asset, Channel
from gateway.core.clock import Clock
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.dsp import features as F
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.framing import Framer
from gateway.runtime.queues import BoundedQueue, QueueClosed

log = logging.getLogger(__name__)

FrameCallback = Callable[[FeatureFrame], None]
BATCH = 64
#: units a speed channel may use, as factors to Hz (checked at config load)
SPEED_TO_HZ = {"Hz": 1.0, "rpm": 1.0 / 60.0}


class DspProcessor:
    """The pure part: framing, features and speed tracking, no I/O and no asyncio."""

    def __init__(
        self,
        cfg: DspConfig,
        channels: dict[str, Channel],
        assets: dict[str, Asset],
        now_ns: Callable[[], int],
    ) -> None:
        self.cfg, self.channels, self.now_ns = cfg, channels, now_ns
        self.asset_of = {ch: a for a, asset in assets.items() for ch in asset.channels}
        self.framers = {
            c: Framer(cfg.window, cfg.hop) for c, ch in channels.items() if ch.is_waveform
        }
        self.extractors = {
            c: ChannelExtractor(ch, assets.get(self.asset_of.get(c, "")), cfg)
            for c, ch in channels.items()
            if ch.is_waveform
        }
        #: speed channel -> the assets it gives the shaft speed of (machines may share a shaft)
        self.speed_of: dict[str, list[str]] = {}
        for name, a in assets.items():
            if a.speed_channel:
                self.speed_of.setdefault(a.speed_channel, []).append(name)
        self.shaft_hz: dict[str, float] = {}  # measured speed per asset
        self._last: dict[str, Reading] = {}

    def process(self, items: list[SampleBlock | Reading]) -> list[FeatureFrame]:
        out: list[FeatureFrame] = []
        for item in items:
            if isinstance(item, SampleBlock):
                out += self._block(item)
            else:
                out.append(self._reading(item))
        return out

    def _block(self, block: SampleBlock) -> list[FeatureFrame]:
        framer = self.framers.get(block.channel)
        if framer is None:
            return []
        w = framer.push(block)
        if w is None:
            return []
        asset = self.asset_of[block.channel]
        ex = self.extractors[block.channel]
        values = ex.compute(w.data, self.shaft_hz.get(asset))
        span = round(self.cfg.window / w.sample_rate_hz * 1e9)
        now = self.now_ns()
        return [
            FeatureFrame(
                asset,
                block.channel,
                int(t),
                int(t) + span,
                now,
                F.SCHEMA_VERSION,
                ex.names,
                ex.units,
                row,
                w.quality,
            )
            for t, row in zip(w.start_ts_ns, values, strict=True)
        ]

    def _reading(self, r: Reading) -> FeatureFrame:
        prev = self._last.get(r.channel)
        rate = 0.0
        if prev is not None and r.source_ts_ns > prev.source_ts_ns:  # _last holds no Bad values
            rate = (r.value - prev.value) / ((r.source_ts_ns - prev.source_ts_ns) / 60e9)
        if r.quality != Quality.BAD:
            self._last[r.channel] = r
            if r.value > 0:
                for asset in self.speed_of.get(r.channel, ()):
                    self.shaft_hz[asset] = r.value * SPEED_TO_HZ[self.channels[r.channel].unit]
        ch = self.channels[r.channel]
        return FeatureFrame(
            self.asset_of[r.channel],
            r.channel,
            r.source_ts_ns,
            r.source_ts_ns,
            self.now_ns(),
            F.SCHEMA_VERSION,
            tuple(n for n, _ in F.SCALAR),
            F.units_for(F.SCALAR, ch.unit),
            np.array([r.value, rate]),
            r.quality,
        )


class DspStage:
    name = "dsp"

    def __init__(
        self,
        cfg: DspConfig,
        channels: dict[str, Channel],
        assets: dict[str, Asset],
        inp: BoundedQueue[SampleBlock | Reading],
        out: BoundedQueue[FeatureFrame],
        clock: Clock,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self.proc = DspProcessor(cfg, channels, assets, clock.now_ns)
        self.inp, self.out, self.on_frame = inp, out, on_frame
        self.frames = 0

    @property
    def framers(self) -> dict[str, Framer]:
        return self.proc.framers

    def status(self) -> dict[str, object]:
        return {"frames": self.frames, "gaps": {c: f.gaps for c, f in self.proc.framers.items()}}

    def process(self, item: SampleBlock | Reading) -> list[FeatureFrame]:
        """Synchronous step for one item (replay and tests)."""
        return self.proc.process([item])

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsp")
        try:
            while True:
                try:
                    items = await self.inp.get_many(BATCH)
                except QueueClosed:
                    return
                frames = await loop.run_in_executor(executor, self.proc.process, items)
                for frame in frames:
                    await self.out.put(frame)
                    self.frames += 1
                    if self.on_frame is not None:
                        self.on_frame(frame)
        finally:
            executor.shutdown(wait=False)
