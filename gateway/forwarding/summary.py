"""Per-channel summaries of feature frames: min, mean, max and last of each feature over an
interval, as ``summary`` journal rows.

Intervals are aligned to multiples of the interval in source time, and a summary's ``ts_ns`` is
its interval's start; re-sending a stored summary writes the same point (idempotent key:
measurement ``summary``, asset, channel, time). A summary that covers only part of its interval
from its start on the gateway's side (a channel's first interval after the gateway starts, or
the rest of an interval after the channel's feature names changed) is stamped with its first
frame's start instead, so that it never overwrites the summary of the same interval's other
part (flushed by the previous run at its shutdown, or made before the change). A summary is
emitted when the first frame of a later interval arrives, or by ``flush`` (at shutdown).
Non-finite feature values are left out of the statistics (a feature with none stays ``null``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.core.records import FeatureFrame, Float64Array
from gateway.store.journal import Row


@dataclass
class _Acc:
    bucket: int
    names: tuple[str, ...]
    lo: Float64Array
    hi: Float64Array
    total: Float64Array
    n: Float64Array
    last: Float64Array
    end_ts_ns: int
    ts_ns: int  # the summary's time: its interval's start, or its first frame's (see above)
    frames: int = 0
    worst_quality: int = 0
    units: tuple[str, ...] = field(default_factory=tuple)


class Summarizer:
    """Summaries of the frames it is given, per ``(asset, channel)``; ``interval_s(asset)``
    gives the interval of an asset in summary mode, ``None`` for one in full mode."""

    def __init__(self, interval_s: dict[str, float]) -> None:
        self.interval_ns = {a: int(s * 1e9) for a, s in interval_s.items()}
        self._open: dict[tuple[str, str], _Acc] = {}
        self.emitted = 0

    def add(self, f: FeatureFrame) -> Row | None:
        """Account ``f``; returns the summary of the interval it closed, if any."""
        step = self.interval_ns.get(f.asset)
        if step is None:
            return None
        key = (f.asset, f.channel)
        bucket = f.start_ts_ns // step
        acc = self._open.get(key)
        out = None
        # a whole interval only after the previous one closed on a frame of this one
        whole = acc is not None and acc.bucket < bucket
        if acc is not None and (acc.bucket != bucket or acc.names != f.names):
            out = self._row(key, acc)
            acc = None
        v = f.values
        ok = np.isfinite(v)
        if acc is None:
            inf = np.full(len(v), np.inf)
            acc = self._open[key] = _Acc(
                bucket,
                f.names,
                inf.copy(),
                -inf,
                np.zeros(len(v)),
                np.zeros(len(v)),
                np.full(len(v), np.nan),
                f.end_ts_ns,
                bucket * step if whole else f.start_ts_ns,
                units=f.units,
            )
        acc.lo = np.where(ok, np.minimum(acc.lo, v), acc.lo)
        acc.hi = np.where(ok, np.maximum(acc.hi, v), acc.hi)
        acc.total += np.where(ok, v, 0.0)
        acc.n += ok
        acc.last = np.where(ok, v, acc.last)
        acc.end_ts_ns = f.end_ts_ns
        acc.frames += 1
        acc.worst_quality = max(acc.worst_quality, int(f.quality))
        return out

    def flush(self) -> list[Row]:
        """Summaries of every open interval (they are closed)."""
        rows = [self._row(k, a) for k, a in self._open.items()]
        self._open.clear()
        return rows

    def _row(self, key: tuple[str, str], acc: _Acc) -> Row:
        self.emitted += 1
        asset, channel = key
        step = self.interval_ns[asset]
        feats: dict[str, object] = {}
        for i, name in enumerate(acc.names):
            if acc.n[i] == 0:
                feats[name] = None
                continue
            feats[name] = {
                "min": float(acc.lo[i]),
                "mean": float(acc.total[i] / acc.n[i]),
                "max": float(acc.hi[i]),
                "last": float(acc.last[i]),
            }
        return Row(
            kind="summary",
            ts_ns=acc.ts_ns,
            asset=asset,
            channel=channel,
            payload={
                "interval_s": step / 1e9,
                "end_ts_ns": acc.end_ts_ns,
                "frames": acc.frames,
                "quality": acc.worst_quality,
                "features": feats,
            },
        )
