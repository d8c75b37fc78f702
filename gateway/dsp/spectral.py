"""Spectral feature extraction, batched: windows (k, N) float32 in, features (k, F) out.

A ``SpectralPlan`` holds everything that depends only on the channel (sample rate, window length,
window function, bands, shaft speed, bearing orders): the window, frequency axis, band matrices,
weighting curves. It is built once per channel; ``compute`` then costs a few FFTs and matrix
products per batch, all in float32, with no per-sample or per-window Python.

Scaling conventions (``N`` window length, ``w`` window, ``X = rfft(x * w)``):
- amplitude spectrum ``A = 2 |X| / sum(w)``: a sine of amplitude ``a`` shows a peak ``a``;
- power spectrum ``P = c |X|^2 / (N sum(w^2))`` with ``c = 2`` except at DC and Nyquist, so
  ``sum(P) = sum((x w)^2) / sum(w^2)`` (Parseval) and a band's sum is its mean-square share.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

from gateway.dsp.windows import periodic_window

F32 = npt.NDArray[np.float32]
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


def _band_matrix(freqs: FArr, bands: list[tuple[float, float]]) -> F32:
    """(F, B) 0/1 matrix: bin f belongs to band b when lo <= f < hi."""
    m = np.zeros((freqs.shape[0], len(bands)), dtype=np.float32)
    for j, (lo, hi) in enumerate(bands):
        m[(freqs >= lo) & (freqs < hi), j] = 1.0
    return m


@dataclass
class SpectralPlan:
    """Precomputed state for one channel kind, sample rate and window length."""

    fs: float
    n: int
    window: str = "hann"
    kind: str = "vibration"  # "vibration" (g) or "acoustic" (Pa)
    bands: list[tuple[float, float]] = field(default_factory=list)
    velocity_band: tuple[float, float] = (10.0, 1000.0)
    shaft_hz: float | None = None  #: fixed speed; or pass ``shaft_hz`` to ``compute``
    has_speed: bool = False  #: order features exist (speed from a channel) even without shaft_hz
    bearing_orders: dict[str, float] | None = None
    envelope_band: tuple[float, float] | None = None  # None: auto-selected per window batch

    def __post_init__(self) -> None:
        n, fs = self.n, self.fs
        self.w = periodic_window(self.window, n).astype(np.float32)
        self.freqs = np.fft.rfftfreq(n, 1.0 / fs)
        self.df = fs / n
        c = np.full(self.freqs.shape[0], 2.0)
        c[0] = 1.0
        if n % 2 == 0:
            c[-1] = 1.0
        self.power_scale = (c / (n * float(np.sum(self.w.astype(np.float64) ** 2)))).astype(
            np.float32
        )
        self.amp_scale = np.float32(2.0 / float(np.sum(self.w)))
        if not self.bands:
            self.bands = log_bands(fs)
        self.band_m = _band_matrix(self.freqs, self.bands)
        lo, hi = self.velocity_band
        f = np.where(self.freqs > 0, self.freqs, np.inf)
        in_band = (self.freqs >= lo) & (self.freqs <= hi)
        # |V| = |A| g0 / (2 pi f): velocity mean square weights on the power spectrum
        self.vel_w = np.where(in_band, (G0_MM_S2 / (2 * np.pi * f)) ** 2, 0.0).astype(np.float32)
        # displacement (um) = A g0 / (2 pi f)^2, mm -> um x 1000
        self.disp_w = np.where(
            in_band, (G0_MM_S2 * 1000.0 / (2 * np.pi * f) ** 2) ** 2, 0.0
        ).astype(np.float32)
        self.freqs32 = self.freqs.astype(np.float32)
        # every linear functional of the power spectrum in one (F, B + 4) matrix applied to |X|^2:
        # band mean squares, total, centroid numerator, velocity and displacement mean squares
        ps = self.power_scale.astype(np.float64)
        self.lin_m = np.column_stack(
            (
                self.band_m * ps[:, None],
                ps,
                ps * self.freqs,
                ps * self.vel_w,
                ps * self.disp_w,
            )
        )
        if self.kind == "acoustic":
            self.a_w = (10.0 ** (a_weighting_db(self.freqs) / 10.0)).astype(np.float32)
            exact = [
                (nom, 1000.0 * 2.0 ** (i / 3.0))
                for i, nom in zip(range(-16, 14), THIRD_OCTAVE_NOMINAL, strict=True)
            ]
            bands = [(nom, c) for nom, c in exact if c * 2 ** (1 / 6) < fs / 2]
            self.third_centres = [nom for nom, _ in bands]
            self.third_m = _band_matrix(
                self.freqs, [(c * 2 ** (-1 / 6), c * 2 ** (1 / 6)) for _, c in bands]
            )
        self.has_speed = self.has_speed or self.shaft_hz is not None
        self.names, self.units = self._schema()

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

    # -- computation -------------------------------------------------------------------------
    def compute(self, x: F32, shaft_hz: float | None = None) -> F32:
        """Features of each row of ``x`` (k, n) float32, in ``names`` order, as (k, F) float32.

        ``shaft_hz`` (the measured speed) overrides the plan's fixed speed; when the plan has
        order features but no speed is known, those features are NaN.
        """
        shaft = shaft_hz if shaft_hz is not None else self.shaft_hz
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"expected (k, {self.n}) windows, got {x.shape}")
        k = x.shape[0]
        spec = scipy.fft.rfft(x * self.w, axis=1, workers=1, overwrite_x=True)
        mag2 = spec.real * spec.real
        mag2 += spec.imag * spec.imag
        # in float64: BLAS rounding then cannot make results depend on the batch's shape
        lin = (mag2.astype(np.float64) @ self.lin_m).astype(np.float32)
        nb = self.band_m.shape[1]
        total, cnum, vel, disp = lin[:, nb], lin[:, nb + 1], lin[:, nb + 2], lin[:, nb + 3]
        out: list[F32] = [lin[:, :nb]]
        with np.errstate(divide="ignore", invalid="ignore"):
            centroid = np.where(total > 0, cnum / total, 0.0)
        dom = np.argmax(mag2[:, 1:], axis=1) + 1
        out += [
            centroid[:, None],
            self.freqs32[dom][:, None],
            np.sqrt(np.take_along_axis(mag2, dom[:, None], axis=1)) * self.amp_scale,
        ]
        if self.kind == "vibration":
            out.append(np.sqrt(vel)[:, None])
            out.append((2 * math.sqrt(2) * np.sqrt(disp))[:, None])
            if self.has_speed:
                out.append(
                    self._peaks(mag2, [k_ * shaft for k_ in (1, 2, 3)], self.freqs, self.amp_scale)
                    if shaft
                    else np.full((k, 3), np.nan, dtype=np.float32)
                )
            # the envelope's band comes from the unwindowed spectrum: cut from the windowed one,
            # the envelope would carry the window's shape instead of the signal's modulation
            raw = scipy.fft.rfft(x, axis=1, workers=1)
            env_amp, env_rms, env_freqs = self._envelope(raw, mag2)
            out.append(env_rms[:, None])
            if self.has_speed and self.bearing_orders:
                if shaft:
                    targets = []
                    for key in BEARING_KEYS:
                        f0 = self.bearing_orders[key] * shaft
                        targets += [f0, 2 * f0]
                    out.append(self._peaks(env_amp, targets, env_freqs, None))
                else:
                    out.append(np.full((k, 2 * len(BEARING_KEYS)), np.nan, dtype=np.float32))
        else:
            p = mag2 * self.power_scale
            pa = p @ self.a_w
            with np.errstate(divide="ignore"):
                out.append((10 * np.log10(pa / P_REF_PA**2))[:, None])
                out.append(10 * np.log10((p @ self.third_m) / P_REF_PA**2))
        res = np.concatenate([np.asarray(o, dtype=np.float32).reshape(k, -1) for o in out], axis=1)
        return res

    def _peaks(
        self, amp: F32, targets: list[float], freqs: FArr, power_to_amp: np.float32 | None
    ) -> F32:
        """Largest amplitude within +-1 bin of each target frequency: (k, len(targets)).
        Targets beyond the axis ``freqs`` read as 0. With ``power_to_amp``, ``amp`` holds
        |X|^2 and the peaks become amplitudes as ``sqrt(|X|^2) * power_to_amp``."""
        idx = np.rint(np.asarray(targets) / self.df).astype(np.int64)
        cols = np.clip(idx[:, None] + np.arange(-1, 2)[None, :], 0, amp.shape[1] - 1)
        out = np.asarray(amp[:, cols].max(axis=2), dtype=np.float32)
        if power_to_amp is not None:
            out = np.sqrt(out) * power_to_amp
        out[:, idx >= freqs.shape[0]] = 0.0
        return out

    def _envelope(self, spec: npt.NDArray[np.complex64], mag2: F32) -> tuple[F32, F32, FArr]:
        """Envelope amplitude spectrum (k, M/2+1), envelope RMS (k,), and its frequency axis.

        Band-pass by keeping only the band's bins (the configured band, or per window the
        auto-selected one); the analytic signal of the band, shifted to baseband, is the
        inverse FFT of those bins over ``M`` points (the smallest power of two holding the
        band): its magnitude is the envelope, sampled at ``M df`` over the same window
        duration, so the envelope spectrum keeps the resolution ``df``.
        """
        k = spec.shape[0]
        if self.envelope_band is not None:
            lo, hi = self.envelope_band
            i0 = np.full(k, int(np.searchsorted(self.freqs, lo)))
            width = max(int(np.searchsorted(self.freqs, hi)) - int(i0[0]), 1)
        else:
            i0, width = self._auto_band(mag2)
        # m >= width holds the complex baseband band without aliasing; |z| components above
        # m df / 2 fold onto (m - width) df .. m df / 2, far above bearing frequencies
        m = 1 << max(4, math.ceil(math.log2(width)))
        base = np.zeros((k, m), dtype=np.complex64)
        cols = np.minimum(i0[:, None] + np.arange(width)[None, :], spec.shape[1] - 1)
        base[:, :width] = np.take_along_axis(spec, cols, axis=1)
        # a carrier a cos(w t) gives |X| = a N / 2 in the unwindowed band; ifft divides by m
        env = np.abs(scipy.fft.ifft(base, axis=1, workers=1)) * np.float32(2.0 * m / self.n)
        env = env.astype(np.float32)
        env -= env.mean(axis=1, keepdims=True)
        env_rms = np.sqrt(np.mean(env * env, axis=1))
        wm = self._env_window(m)
        e = scipy.fft.rfft(env * wm, axis=1, workers=1)
        amp = (np.abs(e) * np.float32(2.0 / float(np.sum(wm)))).astype(np.float32)
        return amp, env_rms.astype(np.float32), np.fft.rfftfreq(m, 1.0 / (m * self.df))

    def _env_window(self, m: int) -> F32:
        cache = self.__dict__.setdefault("_env_windows", {})
        if m not in cache:
            cache[m] = periodic_window("hann", m).astype(np.float32)
        w: F32 = cache[m]
        return w

    def _auto_band(self, mag2: F32) -> tuple[npt.NDArray[np.int64], int]:
        """Per window, the first bin of the 2 kHz-wide band above 1 kHz holding the most
        energy, and the band width in bins. Chosen per window so that results do not depend
        on how windows are batched."""
        width_hz = min(2000.0, self.fs / 4)
        lo_min, hi_max = 1000.0, 0.45 * self.fs
        if hi_max - lo_min < width_hz:
            lo_min, width_hz = self.fs / 8, 0.45 * self.fs - self.fs / 8
        width = max(round(width_hz / self.df), 1)
        first = int(np.searchsorted(self.freqs, lo_min))
        last = int(np.searchsorted(self.freqs, hi_max)) - width
        step = max(width // 4, 1)
        width = 4 * step  # a band is four steps: candidate bands overlap by three quarters
        nseg = max((last - first) // step + 4, 4)
        nseg = min(nseg, (mag2.shape[1] - first) // step)
        seg = mag2[:, first : first + nseg * step].reshape(mag2.shape[0], nseg, step).sum(axis=2)
        c = np.concatenate(
            (np.zeros((seg.shape[0], 1), np.float32), np.cumsum(seg, axis=1)), axis=1
        )
        energy = c[:, 4:] - c[:, :-4]
        starts = first + step * np.argmax(energy, axis=1)
        return starts.astype(np.int64), width
