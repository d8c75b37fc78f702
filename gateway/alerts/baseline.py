"""Running baselines of every asset's features, to name the ones that deviate most when an asset
alarms.

For each (asset, channel): an exponentially weighted mean and variance of every feature, and the
latest window. ``observe`` records a frame as the channel's latest; the previous latest is learnt
then if ``learn`` (the caller passes False while the asset alarms, so a fault is not learnt as
normal). The latest window is never part of the baseline it is compared with: ``top`` ranks it
by ``|z| = |x - mean| / std``. Non-finite feature values count as 0.

Observations are queued (up to ``MAX_PENDING`` frames, about 1024 windows' worth of memory)
and applied in ``settle`` (``top`` settles its asset's first), vectorised across channels: one
set of array operations per feature layout per round, a round holding at most one observation
per channel (so each channel's observations apply in their order). The fewer the settles, the
larger the rounds and the cheaper each observation: callers need not settle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import numpy.typing as npt

from gateway.core.records import FeatureFrame

F64 = npt.NDArray[np.float64]
MAX_PENDING = 1024


@dataclass
class _Block:
    """The state of every channel with ``width`` features, one row each (grown by doubling)."""

    width: int
    rows: int = 0
    mean: F64 = field(init=False)
    var: F64 = field(init=False)
    last: F64 = field(init=False)
    n: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.var, self.last = (np.zeros((8, self.width)) for _ in range(3))
        self.n = np.zeros(8, dtype=np.int64)

    def add_row(self) -> int:
        if self.rows == self.n.shape[0]:
            cap = 2 * self.rows
            for name in ("mean", "var", "last"):
                old = getattr(self, name)
                grown = np.zeros((cap, self.width))
                grown[: self.rows] = old
                setattr(self, name, grown)
            n = np.zeros(cap, dtype=np.int64)
            n[: self.rows] = self.n
            self.n = n
        self.rows += 1
        return self.rows - 1


@dataclass
class _Slot:
    names: tuple[str, ...]
    block: _Block
    row: int


class BaselineBank:
    """The baselines of all channels of all assets (see the module docstring)."""

    def __init__(self, alpha: float, min_windows: int) -> None:
        self.alpha, self.min_windows = alpha, min_windows
        self._blocks: dict[int, _Block] = {}
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._by_asset: dict[str, list[str]] = {}
        self._frames: list[FeatureFrame] = []  # observed, not yet applied
        self._learn: list[bool] = []  # (their learn flags)

    def observe(self, frame: FeatureFrame, learn: bool) -> None:
        """Queue ``frame`` as its channel's latest window (the frame is kept until settled;
        at most ``MAX_PENDING`` are)."""
        self._frames.append(frame)
        self._learn.append(learn)
        if len(self._frames) >= MAX_PENDING:
            self.settle()

    def settle(self, asset: str | None = None) -> None:
        """Apply every queued observation, in order; with ``asset``, that asset's only (the
        channels are independent: the others stay queued, in order)."""
        frames, learns = self._frames, self._learn
        if not frames:
            return
        if asset is not None:
            mine = [f.asset == asset for f in frames]
            if not any(mine):
                return
            if not all(mine):
                others = [not m for m in mine]
                self._frames = list(compress(frames, others))
                self._learn = list(compress(learns, others))
                self._settle(list(compress(frames, mine)), list(compress(learns, mine)))
                return
        self._frames, self._learn = [], []
        self._settle(frames, learns)

    def _settle(self, frames: list[FeatureFrame], learns: list[bool]) -> None:
        slots = self._slots
        found = [slots.get((f.asset, f.channel)) for f in frames]
        known = [
            s for s, f in zip(found, frames, strict=True) if s is not None and s.names is f.names
        ]
        if len(known) == len(frames):  # (the usual case: every channel known, same layout)
            self._apply(frames, learns, known)
            return
        got: list[_Slot] = []
        start = 0
        for i, f in enumerate(frames):
            s = slots.get((f.asset, f.channel))
            if s is None or (s.names is not f.names and s.names != f.names):
                # a new channel or layout: what came before first, then this one afresh
                self._apply(frames[start:i], learns[start:i], got)
                got, start = [], i + 1
                self._fresh((f.asset, f.channel), f)
                continue
            got.append(s)
        self._apply(frames[start:], learns[start:], got)

    def _fresh(self, key: tuple[str, str], frame: FeatureFrame) -> None:
        x = np.asarray(frame.values, dtype=np.float64)
        slot = self._new_slot(key, frame.names, x.shape[0])
        blk, row = slot.block, slot.row
        x = np.where(np.isfinite(x), x, 0.0)
        blk.mean[row] = x
        blk.var[row] = 0.0
        blk.last[row] = x
        blk.n[row] = 0

    def _apply(self, frames: list[FeatureFrame], learns: list[bool], slots: list[_Slot]) -> None:
        """Observations of known channels in their layouts (``slots[i]`` is ``frames[i]``'s)."""
        if not frames:
            return
        blk = slots[0].block
        if len(self._blocks) == 1 or all(s.block is blk for s in slots):
            groups = [(blk, frames, learns, slots)]
        else:  # several layouts: one group per block (each keeps its order)
            by: dict[int, tuple[_Block, list[FeatureFrame], list[bool], list[_Slot]]] = {}
            for f, flag, s in zip(frames, learns, slots, strict=True):
                g = by.get(id(s.block))
                if g is None:
                    g = by[id(s.block)] = (s.block, [], [], [])
                g[1].append(f)
                g[2].append(flag)
                g[3].append(s)
            groups = list(by.values())
        for blk, fs, ls, ss in groups:
            rows = np.array([s.row for s in ss], dtype=np.int64)
            # (one layout per block: the rows have the block's width)
            x = np.concatenate([f.values for f in fs]).astype(np.float64, copy=False)
            x = x.reshape(len(fs), blk.width)
            x[~np.isfinite(x)] = 0.0
            learn = np.array(ls, dtype=bool)
            if len(set(rows.tolist())) == len(ss):
                self._round(blk, rows, x, learn)
                continue
            # a channel observed more than once: rounds of at most one observation per
            # channel, in order (the k-th observation of every channel in round k)
            order = np.argsort(rows, kind="stable")
            sr = rows[order]
            idx = np.arange(len(ss))
            head = np.maximum.accumulate(np.where(np.r_[True, sr[1:] != sr[:-1]], idx, 0))
            occ = np.empty(len(ss), dtype=np.int64)
            occ[order] = idx - head
            for k in range(int(occ.max()) + 1):
                m = occ == k
                self._round(blk, rows[m], x[m], learn[m])

    def _round(
        self, blk: _Block, rows: npt.NDArray[np.int64], x: F64, learn: npt.NDArray[np.bool_]
    ) -> None:
        """Observations ``x`` of distinct ``rows`` of ``blk``."""
        a = self.alpha
        lr = rows[learn]
        if lr.size:
            first = blk.n[lr] == 0
            r0, r1 = lr[first], lr[~first]
            blk.mean[r0] = blk.last[r0]
            d = blk.last[r1] - blk.mean[r1]
            ad = d * a
            blk.mean[r1] += ad
            blk.var[r1] = (blk.var[r1] + ad * d) * (1.0 - a)
            blk.n[lr] += 1
        blk.last[rows] = x

    def _new_slot(self, key: tuple[str, str], names: tuple[str, ...], width: int) -> _Slot:
        blk = self._blocks.get(width)
        if blk is None:
            blk = self._blocks[width] = _Block(width)
        slot = self._slots.get(key)
        if slot is None or slot.block is not blk:
            slot = _Slot(names, blk, blk.add_row())
            if key not in self._slots:
                self._by_asset.setdefault(key[0], []).append(key[1])
            self._slots[key] = slot
        slot.names = names
        return slot

    def top(self, asset: str, k: int) -> tuple[tuple[str, float], ...]:
        """The ``k`` features of ``asset`` (``channel.name``, z-score) whose latest value
        deviates most from their baseline."""
        self.settle(asset)
        ranked: list[tuple[float, str, float]] = []
        for ch in self._by_asset.get(asset, ()):
            s = self._slots[(asset, ch)]
            blk, row = s.block, s.row
            if blk.n[row] < self.min_windows:
                continue
            mean, var, last = blk.mean[row], blk.var[row], blk.last[row]
            scale = np.sqrt(var) + 1e-9 * np.maximum(1.0, np.abs(mean))
            z = (last - mean) / scale
            for i in np.argsort(-np.abs(z))[:k]:
                ranked.append((abs(float(z[i])), f"{ch}.{s.names[i]}", round(float(z[i]), 2)))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return tuple((name, z) for _, name, z in ranked[:k])
