"""Feature extractors, vectorised over windows: input (k, N) samples, output (k, F) values.

``SCHEMA_VERSION`` names the ordered feature set below; model manifests refer to it, so any
change to names, order or definitions bumps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = "pdm-features/2"

#: time-domain features of a waveform window, in the channel's unit (u) or dimensionless
TIME_DOMAIN: tuple[tuple[str, str], ...] = (
    ("mean", "u"),
    ("rms", "u"),
    ("peak", "u"),
    ("peak_to_peak", "u"),
    ("crest_factor", "1"),
    ("kurtosis", "1"),
    ("skewness", "1"),
)

#: rows whose power sums are taken together (16 windows of 4096 samples and their squares:
#: 512 KiB, within a core's L2 cache)
BLOCK = 16

#: coefficients of the central moments' terms, as columns against pairs of rows
_K34 = np.array([[3.0], [4.0]], dtype=np.float32)
_K26 = np.array([[2.0], [6.0]], dtype=np.float32)

#: features of a scalar channel (temperature, speed): value and its rate of change per minute
SCALAR: tuple[tuple[str, str], ...] = (("value", "u"), ("rate_per_min", "u/min"))


def units_for(spec: tuple[tuple[str, str], ...], unit: str) -> tuple[str, ...]:
    """Resolve the placeholder ``u`` to the channel's unit."""
    return tuple(u.replace("u", unit, 1) if u.startswith("u") else u for _, u in spec)


def time_domain(
    x: npt.NDArray[np.floating[Any]],
    out: npt.NDArray[np.floating[Any]] | None = None,
    *,
    mean: npt.NDArray[np.float32] | None = None,
    work: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.floating[Any]]:
    """Time-domain features of each row of ``x`` (k, N), columns in ``TIME_DOMAIN`` order.

    Computed in float32 (relative error ~1e-5 for windows of a few thousand samples). The
    central moments come from the sums of the second, third and fourth powers of each window
    from its squares (row dot products); a window whose offset is not small against its spread
    (mean^2 > m2 / 100, where those sums would cancel) is recomputed from its mean-removed
    samples. Kurtosis is Pearson's (3 for Gaussian noise), skewness the standardised third
    moment; both are 0 for a constant window, as is the crest factor. ``mean`` (k,), when the
    caller has it (the DC bin of an FFT), saves a pass; ``work`` is optional scratch of shape
    (k, N) float32. Written into ``out`` (k, 7) when given, else returned as a new float64
    array, owned by the caller. Each row's values depend on that row alone.
    """
    x = np.asarray(x, dtype=np.float32)
    k, n_ = x.shape
    n = np.float32(n_)
    if mean is None:
        mean = x.mean(axis=1)  # float32, pairwise summation
    work = work if work is not None else np.empty((k, n_), dtype=np.float32)
    sums = np.empty((5, k), dtype=np.float32)  # sum x^2, x^3, x^4; max; min
    for i in range(0, k, BLOCK):  # a block's samples and squares stay in cache over its sums
        xb = x[i : i + BLOCK]
        x2 = np.multiply(xb, xb, out=work[: xb.shape[0]])  # the same rows of scratch each block
        # row dot products: one BLAS dot per row, batch-independent
        np.vecdot(xb, xb, out=sums[0, i : i + BLOCK])
        np.vecdot(x2, xb, out=sums[1, i : i + BLOCK])
        np.vecdot(x2, x2, out=sums[2, i : i + BLOCK])
        np.maximum.reduce(xb, axis=1, out=sums[3, i : i + BLOCK])  # np.max, less overhead
        np.minimum.reduce(xb, axis=1, out=sums[4, i : i + BLOCK])
    xmax, xmin = sums[3], sums[4]
    v = np.empty((4, k), dtype=np.result_type(mean, np.float32))  # mean, s2, s3, s4
    v[0] = mean
    np.divide(sums[:3], n, out=v[1:])
    s2 = v[1]
    mu2 = mean * mean
    m2 = s2 - mu2
    # m3 = s3 - 3 mean s2 + 2 mu2 mean and m4 = s4 - 4 mean s3 + 6 mu2 s2 - 3 mu2 mu2, the
    # terms of both taken as pairs of rows, in the same order
    pair = _K34 * mean  # 3 mean, 4 mean
    pair *= v[1:3]
    np.subtract(v[2:4], pair, out=pair)
    mu2_terms = _K26 * mu2  # 2 mu2, 6 mu2
    mu2_terms *= v[0:2]
    pair += mu2_terms
    m3, m4 = pair
    m4 -= 3 * mu2 * mu2
    centred = mu2 <= np.float32(0.01) * m2  # False also where NaN
    if not centred.all():
        rows = np.flatnonzero(~centred)
        xs, mu = x[rows], mean[rows]
        d = np.subtract(xs, mu[:, None], out=work[: rows.size])  # the squares are summed
        d2 = d * d
        m2[rows] = np.vecdot(d, d) / n
        m3[rows] = np.vecdot(d2, d) / n
        m4[rows] = np.vecdot(d2, d2) / n
    # the features as rows of one array (0 where a ratio is undefined), then one transposed
    # copy into the result
    wide = np.result_type(mean, m2, np.float32)
    cols = np.zeros((len(TIME_DOMAIN), k), dtype=wide)
    cols[0] = mean
    rms = np.sqrt(m2 + mu2, out=cols[1])
    peak = np.maximum(np.abs(xmax), np.abs(xmin), out=cols[2])
    np.subtract(xmax, xmin, out=cols[3])
    tiny = np.float32(1e-12) * np.maximum(np.float32(1.0), mu2)  # m2 below: constant
    spread = m2 > tiny
    # the ratios are float32 whatever the moments' type
    ratios = cols[4:] if wide == np.float32 else np.zeros((3, k), dtype=np.float32)
    np.divide(peak, rms, out=ratios[0], where=rms > 0)
    np.divide(m4, m2 * m2, out=ratios[1], where=spread)
    np.divide(m3, m2**1.5, out=ratios[2], where=spread)
    if wide != np.float32:
        cols[4:] = ratios
    res = np.empty((k, len(TIME_DOMAIN))) if out is None else out
    res[...] = cols.T
    return res
