"""Running baselines of every asset's features, to name the ones that deviate most when an asset
alarms.

For each (asset, channel): an exponentially weighted mean and variance of every feature, and the
latest window. ``observe`` records a frame as the channel's latest; the previous latest is learnt
then if ``learn`` (the caller passes False while the asset alarms, so a fault is not learnt as
normal). The latest window is never part of the baseline it is compared with: ``top`` ranks it
by ``|z| = |x - mean| / std``. Non-finite feature values count as 0.

Observations are queued and applied in ``settle`` (``top`` settles first), vectorised across
channels: one set of array operations per feature layout per round, a round holding at most one
observation per channel (so each channel's observations apply in their order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        self._pending: list[tuple[tuple[str, str], FeatureFrame, bool]] = []

    def observe(self, frame: FeatureFrame, learn: bool) -> None:
        """Queue ``frame`` as its channel's latest window (the frame is kept until settled;
        at most ``MAX_PENDING`` are)."""
        self._pending.append(((frame.asset, frame.channel), frame, learn))
        if len(self._pending) >= MAX_PENDING:
            self.settle()

    def settle(self) -> None:
        """Apply every queued observation."""
        pending, self._pending = self._pending, []
        while pending:
            seen: set[tuple[str, str]] = set()
            now: list[tuple[tuple[str, str], FeatureFrame, bool]] = []
            later: list[tuple[tuple[str, str], FeatureFrame, bool]] = []
            for p in pending:
                if p[0] in seen:
                    later.append(p)
                else:
                    seen.add(p[0])
                    now.append(p)
            self._round(now)
            pending = later

    def _round(self, obs: list[tuple[tuple[str, str], FeatureFrame, bool]]) -> None:
        """Observations of distinct channels."""
        by_block: dict[int, tuple[_Block, list[int], list[F64], list[bool]]] = {}
        fresh: list[tuple[_Block, int, F64]] = []
        for key, frame, learn in obs:
            x = np.asarray(frame.values, dtype=np.float64)
            slot = self._slots.get(key)
            if slot is None or slot.names != frame.names:
                slot = self._new_slot(key, frame.names, x.shape[0])
                fresh.append((slot.block, slot.row, x))
                continue
            got = by_block.get(id(slot.block))
            if got is None:
                got = by_block[id(slot.block)] = (slot.block, [], [], [])
            got[1].append(slot.row)
            got[2].append(x)
            got[3].append(learn)
        for blk, row, x in fresh:
            x = np.where(np.isfinite(x), x, 0.0)
            blk.mean[row] = x
            blk.var[row] = 0.0
            blk.last[row] = x
            blk.n[row] = 0
        a = self.alpha
        for blk, rows_l, xs, learns in by_block.values():
            rows = np.array(rows_l, dtype=np.int64)
            x = np.stack(xs)
            x[~np.isfinite(x)] = 0.0
            lr = rows[np.array(learns, dtype=bool)]
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
        self.settle()
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
