"""Running baseline of an asset's features, to name the ones that deviate most when it alarms."""

from __future__ import annotations

import numpy as np

from gateway.core.records import FeatureFrame, Float64Array


class _Channel:
    __slots__ = ("last", "mean", "n", "names", "var")

    def __init__(self, names: tuple[str, ...], values: Float64Array) -> None:
        self.names = names
        self.mean = np.array(values, dtype=np.float64)
        self.var = np.zeros_like(self.mean)
        self.last = self.mean.copy()
        self.n = 0


class Baseline:
    """Exponentially weighted mean and variance of every feature of every channel of one asset.

    ``observe`` records a frame as the latest; the previous latest is learnt then if ``learn`` (the
    caller passes False while the asset alarms, so a fault is not learnt as normal). The latest
    window is never part of the baseline it is compared with: ``top`` ranks it by
    ``|z| = |x - mean| / std``.
    """

    def __init__(self, alpha: float, min_windows: int) -> None:
        self.alpha, self.min_windows = alpha, min_windows
        self._ch: dict[str, _Channel] = {}

    def observe(self, frame: FeatureFrame, learn: bool) -> None:
        c = self._ch.get(frame.channel)
        x = np.asarray(frame.values, dtype=np.float64)  # kept, never written
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, 0.0)
        if c is None or c.names != frame.names:
            self._ch[frame.channel] = _Channel(frame.names, x)
            return
        if learn:
            if c.n == 0:
                c.mean = c.last.copy()
            else:
                d = c.last - c.mean
                ad = d * self.alpha
                c.mean += ad
                c.var += ad * d
                c.var *= 1.0 - self.alpha
            c.n += 1
        c.last = x

    def top(self, k: int) -> tuple[tuple[str, float], ...]:
        """The ``k`` features (``channel.name``, z-score) whose latest value deviates most."""
        ranked: list[tuple[float, str, float]] = []
        for ch, c in self._ch.items():
            if c.n < self.min_windows:
                continue
            scale = np.sqrt(c.var) + 1e-9 * np.maximum(1.0, np.abs(c.mean))
            z = (c.last - c.mean) / scale
            for i in np.argsort(-np.abs(z))[:k]:
                ranked.append((abs(float(z[i])), f"{ch}.{c.names[i]}", round(float(z[i]), 2)))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return tuple((name, z) for _, name, z in ranked[:k])
