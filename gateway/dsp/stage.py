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

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.config.plant import Asset, Channel
from gateway.core.clock import Clock
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.dsp import features as F
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.framing import Framer
from gateway.runtime.offload import run_batches
from gateway.runtime.queues import BoundedQueue

log = logging.getLogger(__name__)

FrameCallback = Callable[[FeatureFrame], None]
BATCH = 256
#: units a speed channel may use, as factors to Hz (checked at config load)
SPEED_TO_HZ = {"Hz": 1.0, "rpm": 1.0 / 60.0}


def extractor_key(ch: Channel, asset: Asset | None) -> tuple[object, ...]:
    """What a channel's ``ChannelExtractor`` depends on besides the DSP config."""
    if asset is None:
        return (ch.kind, ch.unit, ch.sample_rate_hz)
    b = asset.bearing
    geometry = None if b is None else tuple(b.model_dump().values())
    return (
        ch.kind,
        ch.unit,
        ch.sample_rate_hz,
        asset.shaft_speed_hz,
        bool(asset.speed_channel),
        geometry,
    )


@dataclass
class _Framed:
    """The windows one block completed, waiting for their batch's features."""

    asset: str
    channel: str
    ex: ChannelExtractor
    shaft_hz: float | None
    data: npt.NDArray[np.float32]  #: (k, window), owned
    start_ts_ns: npt.NDArray[np.int64]
    sample_rate_hz: float
    quality: Quality
    values: npt.NDArray[np.float64] | None = None  #: (k, F) once computed

    def frames(self, now: int, window: int) -> list[FeatureFrame]:
        assert self.values is not None
        span = round(window / self.sample_rate_hz * 1e9)
        ex = self.ex
        return [
            FeatureFrame(
                self.asset,
                self.channel,
                int(t),
                int(t) + span,
                now,
                F.SCHEMA_VERSION,
                ex.names,
                ex.units,
                row,
                self.quality,
            )
            for t, row in zip(self.start_ts_ns, self.values, strict=True)
        ]


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
        # channels whose extraction is configured alike share one extractor, so that their
        # windows are computed in one batch
        shared: dict[tuple[object, ...], ChannelExtractor] = {}
        self.extractors: dict[str, ChannelExtractor] = {}
        for c, ch in channels.items():
            if ch.is_waveform:
                asset = assets.get(self.asset_of.get(c, ""))
                key = extractor_key(ch, asset)
                if key not in shared:
                    shared[key] = ChannelExtractor(ch, asset, cfg)
                self.extractors[c] = shared[key]
        #: speed channel -> the assets it gives the shaft speed of (machines may share a shaft)
        self.speed_of: dict[str, list[str]] = {}
        for name, a in assets.items():
            if a.speed_channel:
                self.speed_of.setdefault(a.speed_channel, []).append(name)
        self.shaft_hz: dict[str, float] = {}  # measured speed per asset
        self._last: dict[str, Reading] = {}

    def process(self, items: list[SampleBlock | Reading]) -> list[FeatureFrame]:
        """Frames of ``items``, in item order. The windows of all blocks are framed first, then
        computed in one batch per extractor and shaft speed (results do not depend on how
        windows are batched)."""
        now = self.now_ns()
        slots: list[list[FeatureFrame] | _Framed] = []
        groups: dict[tuple[int, float | None], list[_Framed]] = {}
        for item in items:
            if isinstance(item, SampleBlock):
                framed = self._frame(item)
                if framed is not None:
                    slots.append(framed)
                    groups.setdefault((id(framed.ex), framed.shaft_hz), []).append(framed)
            else:
                slots.append([self._reading(item, now)])
        for members in groups.values():
            ex, shaft = members[0].ex, members[0].shaft_hz
            data = (
                members[0].data if len(members) == 1 else np.concatenate([m.data for m in members])
            )
            values = ex.compute(data, shaft)
            row = 0
            for m in members:
                m.values = values[row : row + len(m.start_ts_ns)]
                row += len(m.start_ts_ns)
        out: list[FeatureFrame] = []
        for slot in slots:
            if isinstance(slot, list):
                out += slot
            else:
                out += slot.frames(now, self.cfg.window)
        return out

    def _frame(self, block: SampleBlock) -> _Framed | None:
        framer = self.framers.get(block.channel)
        if framer is None:
            return None
        w = framer.push(block)
        if w is None:
            return None
        asset = self.asset_of[block.channel]
        return _Framed(
            asset,
            block.channel,
            self.extractors[block.channel],
            self.shaft_hz.get(asset),
            w.data,
            w.start_ts_ns,
            w.sample_rate_hz,
            w.quality,
        )

    def _reading(self, r: Reading, now: int) -> FeatureFrame:
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
            now,
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
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsp")
        try:
            await run_batches(
                lambda: self.inp.get_many(BATCH), self.proc.process, self._emit, executor
            )
        finally:
            executor.shutdown(wait=False)

    async def _emit(self, frames: list[FeatureFrame]) -> None:
        await self.out.put_many(frames)
        self.frames += len(frames)
        if self.on_frame is not None:
            for frame in frames:
                self.on_frame(frame)
