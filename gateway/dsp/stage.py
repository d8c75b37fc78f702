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
from gateway.dsp.spectral import SpectralPlan
from gateway.runtime.offload import run_batches
from gateway.runtime.queues import BoundedQueue

log = logging.getLogger(__name__)

FrameCallback = Callable[[FeatureFrame], None]
BATCH = 64
SCALAR_NAMES = tuple(n for n, _ in F.SCALAR)  #: the names of every scalar channel's frames
#: units a speed channel may use, as factors to Hz (checked at config load)
SPEED_TO_HZ = {"Hz": 1.0, "rpm": 1.0 / 60.0}


@dataclass(slots=True)
class _Pending:
    """Windows of one channel framed in the current batch, waiting for their features."""

    slot: int  # index of the first frame in the batch's output
    channel: str
    asset: str
    ex: ChannelExtractor
    start_ts_ns: npt.NDArray[np.int64]
    rows: slice  # rows in the group's batch
    sample_rate_hz: float
    quality: Quality


class _Group:
    """Windows of all channels sharing one spectral plan, gathered for one ``compute``.

    ``data`` is a preallocated (capacity, N) float32 buffer, grown by doubling and reused from
    batch to batch; only the DSP processor's thread touches it.
    """

    def __init__(self, ex: ChannelExtractor) -> None:
        self.ex = ex
        self.data = np.empty((0, ex.plan.n), dtype=np.float32)
        self.shaft = np.empty(0)
        self.n = 0
        self.pending: list[_Pending] = []

    def add(self, windows: npt.NDArray[np.float32], shaft_hz: float) -> slice:
        k = windows.shape[0]
        if self.n + k > self.data.shape[0]:
            cap = max(2 * self.data.shape[0], self.n + k, 8)
            data = np.empty((cap, self.data.shape[1]), dtype=np.float32)
            data[: self.n] = self.data[: self.n]
            shaft = np.empty(cap)
            shaft[: self.n] = self.shaft[: self.n]
            self.data, self.shaft = data, shaft
        rows = slice(self.n, self.n + k)
        self.data[rows] = windows  # the framer's view is only valid until its next push
        self.shaft[rows] = shaft_hz
        self.n += k
        return rows


class DspProcessor:
    """The pure part: framing, features and speed tracking, no I/O and no asyncio.

    ``process`` frames every block of a batch first, then computes the windows of all
    channels that share a spectral plan in one vectorised call, and returns the frames in the
    order of the items. Not thread-safe: one thread at a time (the stage's worker).
    """

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
        plans: dict[tuple[object, ...], SpectralPlan] = {}
        self.extractors = {
            c: ChannelExtractor(ch, assets.get(self.asset_of.get(c, "")), cfg, plans)
            for c, ch in channels.items()
            if ch.is_waveform
        }
        groups: dict[int, _Group] = {}
        #: waveform channel -> its framer, asset, extractor and the group of its plan
        self._routes = {
            c: (
                self.framers[c],
                self.asset_of.get(c, ""),
                ex,
                groups.setdefault(id(ex.plan), _Group(ex)),
            )
            for c, ex in self.extractors.items()
        }
        #: speed channel -> the assets it gives the shaft speed of (machines may share a shaft)
        self.speed_of: dict[str, list[str]] = {}
        for name, a in assets.items():
            if a.speed_channel:
                self.speed_of.setdefault(a.speed_channel, []).append(name)
        #: scalar channel -> its frames' units (one tuple per channel, as the names are one:
        #: consumers recognise a layout by identity before comparing it)
        self._scalar_units = {
            c: F.units_for(F.SCALAR, ch.unit) for c, ch in channels.items() if not ch.is_waveform
        }
        self.shaft_hz: dict[str, float] = {}  # measured speed per asset
        self._last: dict[str, Reading] = {}

    def process(self, items: list[SampleBlock | Reading]) -> list[FeatureFrame]:
        out: list[FeatureFrame | None] = []
        used: list[_Group] = []
        for item in items:
            if isinstance(item, Reading):
                out.append(self._reading(item))
                continue
            route = self._routes.get(item.channel)
            if route is None:
                continue
            framer, asset, ex, group = route
            w = framer.push(item)
            if w is None:
                continue
            if not group.pending:
                used.append(group)
            # the speed known when the window completes: a later reading in the batch
            # applies to later windows only, as if the items were processed one by one
            shaft = self.shaft_hz.get(asset, ex.plan.shaft_hz or np.nan)
            rows = group.add(w.data, shaft)
            group.pending.append(
                _Pending(
                    len(out),
                    item.channel,
                    asset,
                    ex,
                    w.start_ts_ns,
                    rows,
                    w.sample_rate_hz,
                    w.quality,
                )
            )
            out += [None] * len(w)
        try:
            now = self.now_ns()
            for group in used:
                self._emit(group, now, out)
        finally:
            for group in used:
                group.pending.clear()
                group.n = 0
        return [f for f in out if f is not None]

    def _emit(self, group: _Group, now: int, out: list[FeatureFrame | None]) -> None:
        """Features of a group's windows in one call, into their frames' slots in ``out``.
        Each frame's values are a row of the array ``compute`` returned for this batch."""
        values = group.ex.compute(group.data[: group.n], group.shaft[: group.n])
        schema = F.SCHEMA_VERSION
        for p in group.pending:
            span = round(self.cfg.window / p.sample_rate_hz * 1e9)
            names, units, asset, channel, quality = (
                p.ex.names,
                p.ex.units,
                p.asset,
                p.channel,
                p.quality,
            )
            for i, (t, row) in enumerate(zip(p.start_ts_ns.tolist(), values[p.rows], strict=True)):
                out[p.slot + i] = FeatureFrame(
                    asset, channel, t, t + span, now, schema, names, units, row, quality
                )

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
        return FeatureFrame(
            self.asset_of[r.channel],
            r.channel,
            r.source_ts_ns,
            r.source_ts_ns,
            self.now_ns(),
            F.SCHEMA_VERSION,
            SCALAR_NAMES,
            self._scalar_units[r.channel],
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
