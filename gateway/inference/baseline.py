"""A healthy baseline fitted in numpy: normalisation, PCA, and a held-out threshold.

Features are normalised (``log10`` for amplitudes and energies, standardised, soft-clipped at
``SOFT_CLIP`` standard deviations), then split by
PCA into ``k`` principal directions and the residual. The score of a row is the mean of squares
of its whitened principal scores (Hotelling's T^2 part) and its per-feature whitened residual
(the squared prediction error part): about 1 on the data it was fitted on, growing with any
departure. ``weight`` is the one (F + k, F) matrix the ``.tflite`` applies, so the model computes
``mean((z @ weight.T) ** 2, axis=1)``.

The threshold is set on *held-out* data: the healthy input is cut into whole contiguous segments
(whole recordings when there are enough), each is scored by a baseline fitted on the others, and
the threshold is the worst segment's ``1 - target`` quantile times a safety margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
EPS = 1e-12
#: floors (in standardised units) so a direction that hardly varied in training cannot explode
STD_FLOOR = 1e-3
EIG_FLOOR = 0.05
RESID_FLOOR = 0.05
#: standardised values are soft-clipped to +-SOFT_CLIP (see ``normalise``)
SOFT_CLIP = 8.0


def normalise(
    x: F64,
    log_mask: npt.NDArray[np.bool_],
    mean: F64,
    std: F64,
    soft_clip: float | None = SOFT_CLIP,
) -> F32:
    """``z = (t(x) - mean) / std`` with ``t = log10(max(x, EPS))`` where ``log_mask``, then
    ``c tanh(z / c)`` with ``c = soft_clip``: unchanged for healthy rows (|z| of a few units),
    bounded for any fault, so an int8 model keeps its resolution where the threshold is."""
    t = np.where(log_mask, np.log10(np.maximum(x, EPS)), x)
    z = (t - mean) / std
    if soft_clip:
        z = soft_clip * np.tanh(z / soft_clip)
    return z.astype(np.float32)


@dataclass(frozen=True)
class Baseline:
    log_mask: npt.NDArray[np.bool_]
    mean: F64
    std: F64
    weight: F32  # (F + k, F)
    components: int

    def z(self, x: F64) -> F32:
        return normalise(x, self.log_mask, self.mean, self.std)

    def score(self, x: F64) -> F64:
        """Scores of raw feature rows ``x`` (n, F), computed in numpy (float64)."""
        r = self.z(x).astype(np.float64) @ self.weight.astype(np.float64).T
        return np.asarray(np.mean(r * r, axis=1), dtype=np.float64)


def fit(x: F64, log_mask: npt.NDArray[np.bool_], variance: float = 0.95) -> Baseline:
    """Fit on healthy rows ``x`` (n, F), all finite; ``variance`` picks the PCA rank."""
    n, f = x.shape
    if n < 2 * f:
        raise ValueError(f"{n} windows are too few to learn {f} features (need {2 * f})")
    t = np.where(log_mask, np.log10(np.maximum(x, EPS)), x)
    mean = t.mean(axis=0)
    std = np.maximum(t.std(axis=0), STD_FLOOR)
    z = normalise(x, log_mask, mean, std).astype(np.float64)
    cov = z.T @ z / (n - 1)
    eig, vec = np.linalg.eigh(cov)
    order = np.argsort(eig)[::-1]
    eig, vec = eig[order], vec[:, order]
    share = np.cumsum(eig) / max(float(eig.sum()), EPS)
    k = int(min(f - 1, np.searchsorted(share, variance) + 1))
    p = vec[:, :k]  # (F, k)
    resid_proj = np.eye(f) - p @ p.T
    r = z @ resid_proj
    s_r = np.maximum(r.std(axis=0), RESID_FLOOR)
    # rows: whitened principal scores (k), whitened residual (F)
    w_pc = (p / np.sqrt(np.maximum(eig[:k], EIG_FLOOR))).T  # (k, F)
    w_res = (resid_proj / s_r[None, :]).T  # (F, F): row j gives residual j / s_r[j]
    weight = np.vstack((w_pc, w_res)).astype(np.float32)
    return Baseline(log_mask, mean, std, weight, k)


@dataclass(frozen=True)
class Threshold:
    value: float
    estimated_false_alarm_rate: float
    margin: float
    segments: int
    held_out_scores: F64


def split_segments(parts: list[F64], min_segments: int = 5) -> list[F64]:
    """Whole recordings as segments when there are ``min_segments`` of them, else each cut into
    equal contiguous pieces (never shuffled windows)."""
    if len(parts) >= min_segments:
        return parts
    per = -(-min_segments // len(parts))
    return [s for p in parts for s in np.array_split(p, per) if s.shape[0] > 0]


def calibrate_threshold(
    segments: list[F64],
    log_mask: npt.NDArray[np.bool_],
    target: float = 0.01,
    margin: float = 1.5,
) -> Threshold:
    """Hold out each segment in turn; threshold = max over segments of the held-out
    ``1 - target`` quantile, times ``margin``."""
    if len(segments) < 2:
        raise ValueError("threshold calibration needs at least two segments")
    held: list[F64] = []
    quantiles = []
    for i, seg in enumerate(segments):
        rest = np.concatenate([s for j, s in enumerate(segments) if j != i])
        s = fit(rest, log_mask).score(seg)
        held.append(s)
        quantiles.append(float(np.quantile(s, 1.0 - target)))
    value = max(quantiles) * margin
    all_held = np.concatenate(held)
    rate = float(np.mean(all_held > value))
    return Threshold(value, rate, margin, len(segments), all_held)
