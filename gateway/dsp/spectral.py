"""Spectral feature extraction, batched: windows (k, N) float32 in, features (k, F) out.

A ``SpectralPlan`` holds everything that depends only on the channel (sample rate, window length,
window function, bands, shaft speed, bearing orders): the window's frequency-domain taps, the
frequency axis, the segment tiling behind every band sum, weighting curves, envelope band
geometry. It is built once per channel configuration (channels with equal settings share one).
Per batch, ``compute`` costs one ``rfft`` of the windows, the window applied in the frequency
domain (two passes for Hann), one ``np.add.reduceat`` for all band sums, a few weighted sums
(``np.vecdot``: one BLAS dot per row, so that a row's result never depends on the rest of the
batch, as a matrix product's blocking would make it) and two short FFTs for the envelope, all
in float32 with float64 only for tiny per-window sums, with no per-sample or
per-window Python. Work buffers are kept per batch size and reused; results never alias them.

Scaling conventions (``N`` window length, ``w`` window, ``X = rfft(x * w)``):
- amplitude spectrum ``A = 2 |X| / sum(w)``: a sine of amplitude ``a`` shows a peak ``a``;
- power spectrum ``P = c |X|^2 / (N sum(w^2))`` with ``c = 2`` except at DC and Nyquist, so
  ``sum(P) = sum((x w)^2) / sum(w^2)`` (Parseval) and a band's sum is its mean-square share.
The windowed spectrum is computed divided by the windowing's ``gain``; the plan's scales
(``power_scale``, ``amp_scale`` and the weights derived from them) include it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

from gateway.dsp import features
from gateway.dsp.cosine import CosineWindowing
from gateway.dsp.windows import periodic_window

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]
FArr = npt.NDArray[np.floating[Any]]
G0_MM_S2 = 9806.65  #: standard gravity in mm/s^2 (acceleration in g -> mm/s^2)
P_REF_PA = 20e-6  #: reference sound pressure
#: IEC 61260 nominal 1/3-octave centres, 25 Hz .. 20 kHz (exact centres are 1000 x 2^(n/3))
THIRD_OCTAVE_NOMINAL = (
    25,
    31.5,
    40,
    50,
    63,
    80,
    100,
    125,
    160,
    200,
    250,
    315,
    400,
    500,
    630,
    800,
    1000,
    1250,
    1600,
    2000,
    2500,
    3150,
    4000,
    5000,
    6300,
    8000,
    10000,
    12500,
    16000,
    20000,
)
BEARING_KEYS = ("bpfo", "bpfi", "bsf", "ftf")
ORDER_MULTIPLES = np.array([1.0, 2.0, 3.0])  #: order features: 1x, 2x, 3x shaft speed


def a_weighting_db(f: FArr) -> FArr:
    """IEC 61672-1 A-weighting in dB at frequencies ``f`` (Hz); -inf at 0 Hz."""
    f2 = np.asarray(f, dtype=np.float64) ** 2
    with np.errstate(divide="ignore"):
        ra = (12194.0**2 * f2**2) / (
            (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
        )
        return np.asarray(20 * np.log10(ra) + 2.0, dtype=np.float64)


def log_bands(fs: float, n: int = 8, f_lo: float = 10.0) -> list[tuple[float, float]]:
    """``n`` log-spaced bands from ``f_lo`` to Nyquist."""
    edges = np.geomspace(f_lo, fs / 2, n + 1)
    return [(float(a), float(b)) for a, b in itertools.pairwise(edges)]


def _band_edges(freqs: FArr, bands: list[tuple[float, float]]) -> npt.NDArray[np.int64]:
    """(B, 2) first and past-the-end bin of each band: bin f belongs to a band when
    lo <= f < hi."""
    return np.array(
        [[np.searchsorted(freqs, lo), np.searchsorted(freqs, hi)] for lo, hi in bands],
        dtype=np.int64,
    ).reshape(-1, 2)


class _Work:
    """Work buffers for up to ``rows`` windows. Private to one plan and overwritten by every
    ``compute``: nothing ``compute`` returns is ever a view of them.

    One float32 scratch serves, in turn within a pass, as the time-domain squares (k, N), the
    windowing's differences (k, 2F) and |X|^2 (k, F): fewer bytes for the caches to hold."""

    def __init__(self, rows: int, n: int, f: int, m: int, s: int) -> None:
        self.rows = rows
        self._spec = np.empty((rows, f), dtype=np.complex64)  # windowed spectrum
        self._base = np.empty((rows, m), dtype=np.complex64)  # baseband envelope band
        self._scratch = np.empty(rows * max(n, 2 * f), dtype=np.float32)
        self._seg = np.empty((rows, s))  # scaled power of each of the S segments
        self._cum = np.zeros((rows, s + 1))  # their cumulative sums after a first 0 column

    def views(self, k: int) -> tuple[C64, C64]:
        """The first ``k`` rows of the spectrum and envelope band buffers."""
        return self._spec[:k], self._base[:k]

    def scratch(self, k: int, cols: int) -> F32:
        """A (k, cols) view of the shared scratch (``cols`` at most max(N, 2F)): each use
        overwrites the previous one's."""
        return self._scratch[: k * cols].reshape(k, cols)

    def sums(self, k: int) -> tuple[FArr, FArr]:
        """The first ``k`` rows of the segment power (k, S) and cumulative power (k, S + 1)
        buffers; the cumulative one's first column is always 0."""
        return self._seg[:k], self._cum[:k]


#: windows per pass: enough to amortise the per-call overhead, few enough that the work
#: buffers (about 3.5 x 4 N bytes per window) stay in cache; a longer batch takes several
#: passes, with the same results (each window's features depend on that window alone)
ROWS = 64
PASS_SAMPLES = 1 << 20  #: and at most this many samples per pass (long windows: fewer rows)


@dataclass
class SpectralPlan:
    """Precomputed state for one channel kind, sample rate and window length.

    Not re-entrant: ``compute`` reuses the plan's work buffers, so one thread at a time may
    call it (the DSP stage runs all batches on its single worker thread).
    """

    fs: float
    n: int
    window: str = "hann"
    kind: str = "vibration"  # "vibration" (g) or "acoustic" (Pa)
    bands: list[tuple[float, float]] = field(default_factory=list)
    velocity_band: tuple[float, float] = (10.0, 1000.0)
    shaft_hz: float | None = None  #: fixed speed; or pass ``shaft_hz`` to ``compute``
    has_speed: bool = False  #: order features exist (speed from a channel) even without shaft_hz
    bearing_orders: dict[str, float] | None = None
    envelope_band: tuple[float, float] | None = None  # None: auto-selected per window

    def __post_init__(self) -> None:
        n, fs = self.n, self.fs
        w64 = periodic_window(self.window, n)
        self.w = w64.astype(np.float32)
        self.windowing = CosineWindowing.for_window(w64)
        self.freqs = np.fft.rfftfreq(n, 1.0 / fs)
        self.nf = self.freqs.shape[0]
        self.df = fs / n
        c = np.full(self.nf, 2.0)
        c[0] = 1.0
        if n % 2 == 0:
            c[-1] = 1.0
        # the windowed spectrum comes out divided by the windowing's gain: folded in here
        gain = abs(self.windowing.gain) if self.windowing is not None else 1.0
        ps = c * gain**2 / (n * float(np.sum(self.w.astype(np.float64) ** 2)))
        self.power_scale = ps.astype(np.float32)
        self.amp_scale = np.float32(2.0 * gain / float(np.sum(self.w)))
        if not self.bands:
            self.bands = log_bands(fs)
        lo, hi = self.velocity_band
        f = np.where(self.freqs > 0, self.freqs, np.inf)
        # velocity band lo <= f <= hi: weights on |X|^2 (power scale folded in) for the velocity
        # mean square (|V| = |A| g0 / (2 pi f)) and displacement (um, A g0 / (2 pi f)^2 x 1000)
        self.vel_lo = int(np.searchsorted(self.freqs, lo))
        self.vel_hi = int(np.searchsorted(self.freqs, hi, side="right"))
        sl = slice(self.vel_lo, self.vel_hi)
        self.vel_w = (ps * (G0_MM_S2 / (2 * np.pi * f)) ** 2)[sl].astype(np.float32)
        self.disp_w = (ps * (G0_MM_S2 * 1000.0 / (2 * np.pi * f) ** 2) ** 2)[sl].astype(np.float32)
        #: both, as rows: one vecdot gives the two sums (each still one dot per window)
        self.vel_disp_w = np.vstack((self.vel_w, self.disp_w))
        self.centroid_w = (ps * self.freqs).astype(np.float32)
        self.freqs32 = self.freqs.astype(np.float32)
        third: list[tuple[float, float]] = []
        if self.kind == "acoustic":
            self.a_w = (ps * 10.0 ** (a_weighting_db(self.freqs) / 10.0)).astype(np.float32)
            exact = [
                (nom, 1000.0 * 2.0 ** (i / 3.0))
                for i, nom in zip(range(-16, 14), THIRD_OCTAVE_NOMINAL, strict=True)
            ]
            kept = [(nom, c) for nom, c in exact if c * 2 ** (1 / 6) < fs / 2]
            self.third_centres = [nom for nom, _ in kept]
            third = [(c * 2 ** (-1 / 6), c * 2 ** (1 / 6)) for _, c in kept]
        self._envelope_plan()
        self._sums_plan(_band_edges(self.freqs, self.bands), _band_edges(self.freqs, third))
        self.has_speed = self.has_speed or self.shaft_hz is not None
        self.names, self.units = self._schema()
        self._work: _Work | None = None
        self.rows = max(1, min(ROWS, PASS_SAMPLES // n))  #: windows per pass
        #: peak columns per (speed, axis length, targets), for a speed shared by a batch
        self._peak_cols: dict[
            tuple[float, int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | None]
        ] = {}
        f0 = [self.bearing_orders[key] for key in BEARING_KEYS] if self.bearing_orders else []
        #: envelope targets in shaft orders: each defect frequency, then its first harmonic
        self.bearing_multiples = np.array([m for f in f0 for m in (f, 2 * f)])

    def _sums_plan(self, bands: npt.NDArray[np.int64], third: npt.NDArray[np.int64]) -> None:
        """Every band sum (energy bands, 1/3 octaves, total) from one ``np.add.reduceat`` over
        segments tiling the spectrum: a band is a run of whole segments. DC and Nyquist are
        segments of their own, as their power scale is half the other bins'."""
        nf = self.nf
        auto = self.auto_edges if self.envelope_band is None else np.zeros((0, 2), np.int64)
        edges = np.concatenate((bands.ravel(), third.ravel(), auto.ravel(), [0, 1, nf - 1]))
        starts = np.unique(np.clip(edges, 0, nf))
        self.seg_starts = starts[starts < nf]
        scale = np.full(self.seg_starts.shape[0], float(self.power_scale[nf // 2]))
        for b in (0, nf - 1):
            scale[np.searchsorted(self.seg_starts, b)] = float(self.power_scale[b])
        self.seg_scale = scale

        def runs(b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            lo = np.searchsorted(self.seg_starts, np.clip(b[:, 0], 0, nf))
            hi = np.searchsorted(self.seg_starts, np.clip(b[:, 1], 0, nf))
            return np.column_stack((lo, np.maximum(hi, lo))).astype(np.int64)

        self.band_runs, self.third_runs, self.auto_runs = runs(bands), runs(third), runs(auto)
        #: the cumulative-power columns each band's sum is the difference of, contiguous
        self.band_lo, self.band_hi = (np.ascontiguousarray(c) for c in self.band_runs.T)

    def _envelope_plan(self) -> None:
        """Envelope band (fixed start bin, or per window from the auto-selection) and the
        length ``m`` of its baseband inverse FFT."""
        if self.envelope_band is not None:
            lo, hi = self.envelope_band
            self.env_i0 = int(np.searchsorted(self.freqs, lo))
            self.env_width = max(int(np.searchsorted(self.freqs, hi)) - self.env_i0, 1)
        else:
            width_hz = min(2000.0, self.fs / 4)
            lo_min, hi_max = 1000.0, 0.45 * self.fs
            if hi_max - lo_min < width_hz:
                lo_min, width_hz = self.fs / 8, 0.45 * self.fs - self.fs / 8
            width = max(round(width_hz / self.df), 1)
            self.auto_first = int(np.searchsorted(self.freqs, lo_min))
            last = int(np.searchsorted(self.freqs, hi_max)) - width
            self.auto_step = max(width // 4, 1)
            # a band is four steps: candidate bands overlap by three quarters
            self.env_width = 4 * self.auto_step
            nseg = max((last - self.auto_first) // self.auto_step + 4, 4)
            nseg = min(nseg, (self.nf - self.auto_first) // self.auto_step)
            starts = self.auto_first + self.auto_step * np.arange(max(nseg - 3, 1))
            self.auto_edges = np.column_stack((starts, starts + self.env_width)).astype(np.int64)
        # m >= width holds the complex baseband band without aliasing; |z| components above
        # m df / 2 fold onto (m - width) df .. m df / 2, far above bearing frequencies
        self.env_m = 1 << max(4, math.ceil(math.log2(self.env_width)))
        self.env_w = periodic_window("hann", self.env_m).astype(np.float32)
        self.env_amp_scale = np.float32(2.0 / float(np.sum(self.env_w)))
        self.env_scale = np.float32(2.0 / self.n)
        self.n32 = np.float32(self.n)
        self.env_m32 = np.float32(self.env_m)
        self.env_freqs = np.fft.rfftfreq(self.env_m, 1.0 / (self.env_m * self.df))

    def work(self, k: int) -> _Work:
        """The plan's work buffers, for at least ``k`` (at most ``rows``) windows: allocated
        once, grown to the largest batch seen, then reused."""
        if self._work is None or self._work.rows < k:
            rows = min(self.rows, max(k, 2 * (self._work.rows if self._work else 0)))
            segments = self.seg_starts.shape[0]
            self._work = _Work(rows, self.n, self.nf, self.env_m, segments)
        return self._work

    # -- schema ------------------------------------------------------------------------------
    def _schema(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        u = "g" if self.kind == "vibration" else "Pa"
        names: list[str] = []
        units: list[str] = []

        def add(name: str, unit: str) -> None:
            names.append(name)
            units.append(unit)

        for lo, hi in self.bands:
            add(f"band_{lo:.0f}_{hi:.0f}hz_ms", f"{u}^2")
        add("spectral_centroid", "Hz")
        add("dominant_freq", "Hz")
        add("dominant_amp", u)
        if self.kind == "vibration":
            add("velocity_rms", "mm/s")
            add("displacement_pp", "um")
            if self.has_speed:
                for k in (1, 2, 3):
                    add(f"order_{k}x_amp", u)
            add("envelope_rms", u)
            if self.has_speed and self.bearing_orders:
                for key in BEARING_KEYS:
                    add(f"env_{key}_amp", u)
                    add(f"env_{key}_2x_amp", u)
        else:
            add("laeq", "dB(A)")
            for c in self.third_centres:
                add(f"third_octave_{c:g}hz", "dB")
        return tuple(names), tuple(units)

    # -- computation
    def compute(
        self,
        x: F32,
        shaft_hz: float | npt.NDArray[np.floating[Any]] | None = None,
        out: FArr | None = None,
        time_domain: FArr | None = None,
    ) -> FArr:
        """Features of each row of ``x`` (k, n) float32, in ``names`` order, as (k, F).

        ``shaft_hz`` (the measured speed; a scalar or one per row, NaN or 0 where unknown)
        overrides the plan's fixed speed; order features without a known speed are NaN.
        Written into ``out`` (k, F) when given (any float dtype), else into a new float32
        array; either way the caller owns the result, which never aliases the plan's buffers.
        With ``time_domain`` (k, 7), the time-domain features (``features.TIME_DOMAIN``) are
        written there too, reusing this FFT's mean. Each row's values depend on that row
        alone, not on the rest of the batch.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"expected (k, {self.n}) windows, got {x.shape}")
        k = x.shape[0]
        res = np.empty((k, len(self.names)), dtype=np.float32) if out is None else out
        shaft = self._shaft(shaft_hz, k)
        for i in range(0, k, self.rows):
            j = min(i + self.rows, k)
            self._pass(
                x[i:j],
                shaft if shaft.ndim == 0 else self._shaft(shaft[i:j], j - i),
                res[i:j],
                None if time_domain is None else time_domain[i:j],
            )
        return res

    def _pass(self, x: F32, shaft: FArr, res: FArr, time_domain: FArr | None) -> None:
        """``compute`` for at most ``rows`` windows; ``shaft`` as ``_shaft`` returns it."""
        k = x.shape[0]
        wk = self.work(k)
        spec_buf, base = wk.views(k)
        raw = scipy.fft.rfft(x, axis=1, workers=1)
        # the scratch holds in turn the time-domain squares, the windowing's differences, |X|^2
        if time_domain is not None:
            mean = raw[:, 0].real / self.n32
            features.time_domain(x, time_domain, mean=mean, work=wk.scratch(k, self.n))
        if self.windowing is None:
            spec = scipy.fft.rfft(x * self.w, axis=1, workers=1)
        else:  # divided by the windowing's gain, which the scales include
            tmp = wk.scratch(k, 2 * self.nf) if self.windowing.j else None
            spec = self.windowing.apply(raw, spec_buf, tmp)
        mag2 = wk.scratch(k, self.nf)
        np.abs(spec, out=mag2)
        np.square(mag2, out=mag2)
        cum = self._cum(mag2, wk)
        total = cum[:, -1]
        # each feature written straight into its column(s) of res
        col = self.band_hi.shape[0]
        np.subtract(cum[:, self.band_hi], cum[:, self.band_lo], out=res[:, :col])
        cnum = np.vecdot(mag2, self.centroid_w)
        # (the float64 quotient rounded to float32 on its way out)
        res[:, col] = np.divide(cnum, total, out=np.zeros(k, np.float32), where=total > 0)
        # the dominant line is never DC: the first maximum of each row after it; the first
        # maximum of the whole row when that is not DC (or NaN there), as it almost never is
        dom = mag2.argmax(axis=1)
        if not dom.all():
            dc = mag2[:, 0].copy()
            mag2[:, 0] = -1.0
            dom = mag2.argmax(axis=1)
            mag2[:, 0] = dc
        res[:, col + 1] = self.freqs32[dom]
        res[:, col + 2] = np.sqrt(mag2[np.arange(k), dom]) * self.amp_scale
        col += 3
        if self.kind == "vibration":
            band = mag2[:, None, self.vel_lo : self.vel_hi]
            vel_disp = np.sqrt(np.vecdot(band, self.vel_disp_w))  # (k, 2): velocity, displacement
            vel_disp[:, 1] *= np.float32(2 * math.sqrt(2))
            res[:, col : col + 2] = vel_disp
            col += 2
            if self.has_speed:
                orders = np.sqrt(self._peaks(mag2, shaft, ORDER_MULTIPLES))
                orders *= self.amp_scale
                res[:, col : col + 3] = orders
                col += 3
            # the envelope's band comes from the unwindowed spectrum: cut from the windowed one,
            # the envelope would carry the window's shape instead of the signal's modulation
            bearing = bool(self.has_speed and self.bearing_orders)
            env_amp, env_rms, _ = self._envelope(raw, mag2, base, cum, spectrum=bearing)
            res[:, col] = env_rms
            col += 1
            if bearing:
                assert env_amp is not None
                res[:, col:] = self._peaks(env_amp, shaft, self.bearing_multiples)
        else:
            with np.errstate(divide="ignore"):
                pa = np.vecdot(mag2, self.a_w).astype(np.float64)
                res[:, col] = 10 * np.log10(pa / P_REF_PA**2)
                third = cum[:, self.third_runs[:, 1]] - cum[:, self.third_runs[:, 0]]
                res[:, col + 1 :] = 10 * np.log10(third / P_REF_PA**2)

    def _cum(self, mag2: F32, wk: _Work | None = None) -> FArr:
        """Cumulative power over the segments tiling the spectrum, (k, S + 1) float64: every
        band's mean square is the difference of two columns. In ``wk``'s buffers when given
        (then valid until the next pass), else in a new array."""
        k, segments = mag2.shape[0], self.seg_starts.shape[0]
        if wk is None:
            seg, cum = np.empty((k, segments)), np.zeros((k, segments + 1))
        else:
            seg, cum = wk.sums(k)
        # float32 sums, each scaled in float64
        np.multiply(np.add.reduceat(mag2, self.seg_starts, axis=1), self.seg_scale, out=seg)
        np.add.accumulate(seg, axis=1, out=cum[:, 1:])  # np.cumsum, less overhead
        return cum

    def _shaft(self, shaft_hz: float | npt.NDArray[np.floating[Any]] | None, k: int) -> FArr:
        """Shaft speed in Hz: a scalar when one speed holds for all rows, else (k,); NaN where
        unknown."""
        if isinstance(shaft_hz, float):  # one speed (the usual case): no array work
            return np.asarray(shaft_hz if shaft_hz > 0 else np.nan)
        s = np.asarray(self.shaft_hz if shaft_hz is None else shaft_hz, dtype=np.float64)
        if s.ndim == 1 and s.size and (s == s[0]).all():
            s = s[0]  # one speed for the whole batch (NaN never compares equal: below)
        s = np.where(s > 0, s, np.nan)
        if s.ndim == 1 and s.size and np.isnan(s).all():
            return np.asarray(np.nan)  # no speed known for the whole batch
        return s

    def _peaks(self, spec: F32, shaft: FArr, multiples: FArr) -> F32:
        """Largest value of ``spec`` (k, L) within +-1 bin of each target frequency
        ``shaft x multiples`` (T,): (k, T) float32. Targets beyond the axis read as 0, those of
        an unknown speed as NaN."""
        k, length = spec.shape
        if shaft.ndim == 0:
            speed = float(shaft)
            if not math.isfinite(speed):
                return np.full((k, multiples.shape[0]), np.nan, dtype=np.float32)
            key = (speed, length, multiples.shape[0])
            cached = self._peak_cols.get(key)
            if cached is None:
                i1 = np.rint(shaft * multiples / self.df).astype(np.int64)
                cols1 = np.clip(i1[:, None] + np.arange(-1, 2), 0, length - 1).ravel()
                if len(self._peak_cols) >= 64:  # a measured speed changes: keep a few
                    self._peak_cols.clear()
                beyond = np.flatnonzero(i1 >= length)
                cached = self._peak_cols[key] = (cols1, beyond if beyond.size else None)
            cols1, beyond_cols = cached
            out1: F32 = np.maximum.reduce(spec[:, cols1].reshape(k, -1, 3), axis=2)
            out1 = out1.astype(np.float32, copy=False)
            if beyond_cols is not None:
                out1[:, beyond_cols] = 0.0
            return out1
        idx = np.rint(np.multiply.outer(shaft, multiples) / self.df)
        known = np.isfinite(idx)
        i = np.where(known, idx, 0).astype(np.int64)
        cols = np.minimum(i[..., None] + np.arange(-1, 2), length - 1)
        np.maximum(cols, 0, out=cols)
        if i.ndim == 1:  # one speed for the batch: the same columns in every row
            vals = spec[:, cols.ravel()].reshape(k, -1, 3)
        else:
            vals = np.take_along_axis(spec, cols.reshape(k, -1), axis=1).reshape(cols.shape)
        out: F32 = vals.max(axis=2).astype(np.float32)
        if i.ndim == 1:
            out[:, i >= length] = 0.0
        else:
            out[i >= length] = 0.0
            out[~known] = np.nan
        return out

    def _envelope(
        self,
        spec: npt.NDArray[np.complex64],
        mag2: F32,
        base: C64 | None = None,
        cum: FArr | None = None,
        spectrum: bool = True,
    ) -> tuple[F32 | None, F32, FArr]:
        """Envelope amplitude spectrum (k, m/2+1) (None unless ``spectrum``: only bearing
        features read it), envelope RMS (k,), and its frequency axis.

        Band-pass by keeping only the band's bins of the unwindowed spectrum ``spec`` (the
        configured band, or per window the auto-selected one, from ``mag2``, or from its
        segment sums ``cum`` when given); the analytic signal of the band, shifted to baseband,
        is the inverse FFT of those bins over ``m`` points (the smallest power of two holding
        the band): its magnitude is the envelope, sampled at ``m df`` over the same window
        duration, so the envelope spectrum keeps the resolution ``df``.
        """
        k = spec.shape[0]
        if base is None:
            base = np.empty((k, self.env_m), dtype=np.complex64)
        width = self.env_width
        if self.envelope_band is not None:
            i0 = self.env_i0
            stop = min(i0 + width, spec.shape[1])
            base[:, : stop - i0] = spec[:, i0:stop]
            base[:, stop - i0 :] = 0
        else:
            starts = self._auto_band(self._cum(mag2) if cum is None else cum)
            # every auto band lies inside the spectrum: one contiguous slice per row
            # (k, F - width + 1, width) view: row r, band start s -> spec[r, s : s + width]
            item = spec.itemsize
            bands: C64 = np.ndarray(
                (k, spec.shape[1] - width + 1, width),
                spec.dtype,
                np.ascontiguousarray(spec),
                strides=(spec.shape[1] * item, item, item),
            )
            base[:, :width] = bands[np.arange(k), starts]
            base[:, width:] = 0
        # unnormalised inverse: a carrier a cos(w t) gives |X| = a N / 2 in the band
        env = np.abs(scipy.fft.ifft(base, axis=1, workers=1, norm="forward", overwrite_x=True))
        env *= self.env_scale
        env -= np.add.reduce(env, axis=1, keepdims=True) / self.env_m  # (np.mean, less overhead)
        env_rms = np.sqrt(np.vecdot(env, env) / self.env_m32)
        if not spectrum:
            return None, env_rms, self.env_freqs
        env *= self.env_w
        amp = np.abs(scipy.fft.rfft(env, axis=1, workers=1))
        amp *= self.env_amp_scale
        return amp, env_rms, self.env_freqs

    def _auto_band(self, cum: FArr) -> npt.NDArray[np.int64]:
        """Per window, the first bin of the 2 kHz-wide band above 1 kHz holding the most
        energy (band width ``env_width`` bins; candidates overlap by three quarters), from the
        segment sums ``cum``. Chosen per window so that results do not depend on how windows
        are batched."""
        energy = cum[:, self.auto_runs[:, 1]] - cum[:, self.auto_runs[:, 0]]
        starts: npt.NDArray[np.int64] = self.auto_edges[np.argmax(energy, axis=1), 0]
        return starts
