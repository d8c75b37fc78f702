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

import dataclasses
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from gateway.config.plant import Asset, Channel
from gateway.core.clock import Clock
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock, Score
from gateway.dsp import features as F
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.framing import Framer
from gateway.dsp.spectral import SpectralPlan
from gateway.runtime.gather import Gatherer
from gateway.runtime.offload import run_batches
from gateway.runtime.queues import BoundedQueue

log = logging.getLogger(__name__)

FrameCallback = Callable[[FeatureFrame], None]
#: a step on each batch's frames, on the worker thread (see ``DspStage.post``)
PostStep = Callable[[list[FeatureFrame]], list[FeatureFrame | Score]]
BATCH = 64
SCALAR_NAMES = tuple(n for n, _ in F.SCALAR)  #: the names of every scalar channel's frames
#: units a speed channel may use, as factors to Hz (checked at config load)
SPEED_TO_HZ = {"Hz": 1.0, "rpm": 1.0 / 60.0}


_FRAME_FIELDS = (
    "asset",
    "channel",
    "start_ts_ns",
    "end_ts_ns",
    "gateway_ts_ns",
    "schema_version",
    "names",
    "units",
    "values",
    "quality",
)


def _frame_builder() -> Callable[..., FeatureFrame]:
    """A ``FeatureFrame`` constructor for frames whose checks hold by construction: it sets
    the slots directly, skipping ``__post_init__`` (values as long as names and units, made
    read-only). Falls back to the class itself should its fields ever differ from these."""
    fields = tuple(f.name for f in dataclasses.fields(FeatureFrame))
    found = [getattr(getattr(FeatureFrame, n, None), "__set__", None) for n in _FRAME_FIELDS]
    if fields != _FRAME_FIELDS or not all(callable(s) for s in found):
        return FeatureFrame
    setters = cast(list[Callable[[FeatureFrame, object], None]], found)
    new = object.__new__
    s_asset, s_channel, s_start, s_end, s_gw, s_schema, s_names, s_units, s_values, s_q = setters

    def build(
        asset: str,
        channel: str,
        start_ts_ns: int,
        end_ts_ns: int,
        gateway_ts_ns: int,
        schema_version: str,
        names: tuple[str, ...],
        units: tuple[str, ...],
        values: npt.NDArray[np.float64],
        quality: Quality,
    ) -> FeatureFrame:
        f: FeatureFrame = new(FeatureFrame)
        s_asset(f, asset)
        s_channel(f, channel)
        s_start(f, start_ts_ns)
        s_end(f, end_ts_ns)
        s_gw(f, gateway_ts_ns)
        s_schema(f, schema_version)
        s_names(f, names)
        s_units(f, units)
        s_values(f, values)
        s_q(f, quality)
        return f

    return build


_frame = _frame_builder()

#: a framed block waiting for its features (see ``_Group``)
_Pending = tuple[int, str, str, ChannelExtractor, int, list[int], int, int, int, Quality, float]


class _Group:
    """Windows of all channels sharing one spectral plan, gathered for one ``compute``.

    ``data`` is a preallocated (capacity, N) float32 buffer, grown by doubling and reused from
    batch to batch; only the DSP processor's thread touches it. ``pending`` lists, per framed
    block, ``(slot, channel, asset, extractor, first window's start ns, window start offsets
    in ns, first row, rows, window span in ns, quality, shaft speed)``: the frames to build once the
    features are known, ``slot`` being the index of the first one in the batch's output.
    """

    def __init__(self, ex: ChannelExtractor) -> None:
        self.ex = ex
        self.data = np.empty((0, ex.plan.n), dtype=np.float32)
        self.n = 0
        self.pending: list[_Pending] = []

    def add(self, framer: Framer, k: int) -> int:
        """Copy the ``k`` windows ``framer`` just completed into the next rows (before its next
        push overwrites them); return the first of those rows."""
        n = self.n
        if n + k > self.data.shape[0]:
            cap = max(2 * self.data.shape[0], n + k, 8)
            data = np.empty((cap, self.data.shape[1]), dtype=np.float32)
            data[:n] = self.data[:n]
            self.data = data
        if k == 1:
            self.data[n] = framer.buffer[framer.first : framer.first + framer.window]
        else:
            self.data[n : n + k] = framer.view(k)
        self.n = n + k
        return n

    def shaft(self) -> float | npt.NDArray[np.float64]:
        """The shaft speed of each row: one float when all rows share it (NaN included),
        else (n,)."""
        speeds = {p[10] for p in self.pending}
        if len(speeds) == 1:
            return self.pending[0][10]
        if all(s != s for s in speeds):  # NaN values never compare equal
            return math.nan
        shaft = np.empty(self.n)
        for p in self.pending:
            shaft[p[6] : p[6] + p[7]] = p[10]
        return shaft


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
            k = framer.advance(item)
            if not k:
                continue
            if not group.pending:
                used.append(group)
            group.pending.append(
                (
                    len(out),
                    item.channel,
                    asset,
                    ex,
                    framer.first_ts_ns,
                    framer.offsets_ns,
                    group.add(framer, k),
                    k,
                    framer.span_ns,
                    framer.quality,
                    # the speed known when the window completes: a later reading in the batch
                    # applies to later windows only, as if the items were processed one by one
                    self.shaft_hz.get(asset, ex.plan.shaft_hz or math.nan),
                )
            )
            out += [None] * k
        try:
            now = self.now_ns()
            for group in used:
                self._emit(group, now, out)
        finally:
            for group in used:
                group.pending.clear()
                group.n = 0
        return cast(list[FeatureFrame], out)  # _emit filled every slot

    def _emit(self, group: _Group, now: int, out: list[FeatureFrame | None]) -> None:
        """Features of a group's windows in one call, into their frames' slots in ``out``.
        Each frame's values are a row of the array ``compute`` returned for this batch, made
        read-only as a whole; the frames are built by ``_frame``, without re-checking what
        holds by construction (values of ``len(names)`` columns, read-only)."""
        values = group.ex.compute(group.data[: group.n], group.shaft())
        values.flags.writeable = False
        rows = list(values)  # row views, read-only as their base is
        schema = F.SCHEMA_VERSION
        frame = _frame
        for slot, channel, asset, ex, t0, offsets, row, k, span, quality, _ in group.pending:
            names, units = ex.names, ex.units
            for i in range(k):
                t = t0 + offsets[i]
                out[slot + i] = frame(
                    asset, channel, t, t + span, now, schema, names, units, rows[row + i], quality
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
        #: takes the batches: those arriving close together go as one
        self.gather = Gatherer(inp.get_many, BATCH, cfg.batch_wait_ms / 1000, clock)
        self.inp, self.on_frame = inp, on_frame
        self.out: BoundedQueue[Any] = out
        self.frames = 0
        #: run on each batch's frames on the worker thread, in the same hand-off, its output
        #: going to ``out`` instead of the frames (inference scoring them: ``models.inline``);
        #: set before ``run``
        self.post: PostStep | None = None
        #: called on the event loop after each batch's output was put to ``out``
        self.after_emit: Callable[[], None] | None = None

    @property
    def framers(self) -> dict[str, Framer]:
        return self.proc.framers

    def status(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "gaps": {c: f.gaps for c, f in self.proc.framers.items()},
            # batches held for the blocks arriving just after them (``dsp.batch_wait_ms``)
            "batches_held": self.gather.waits,
        }

    def process(self, item: SampleBlock | Reading) -> list[FeatureFrame]:
        """Synchronous step for one item (replay and tests)."""
        return self.proc.process([item])

    async def run(self) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsp")
        try:
            await run_batches(self.gather, self._work, self._emit, executor)
        finally:
            executor.shutdown(wait=False)

    def _work(self, items: list[SampleBlock | Reading]) -> tuple[int, list[Any]]:
        """On the worker thread: the batch's frames (through ``post`` when set), and how many
        frames there are."""
        frames = self.proc.process(items)
        post = self.post
        return len(frames), frames if post is None else post(frames)

    async def _emit(self, result: tuple[int, list[Any]]) -> None:
        n, items = result
        await self.out.put_many(items)
        self.frames += n
        if self.on_frame is not None:
            for item in items:
                if type(item) is FeatureFrame:
                    self.on_frame(item)
        if self.after_emit is not None:
            self.after_emit()
