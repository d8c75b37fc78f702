"""Windowing in the frequency domain for cosine-sum windows.

Every window function the configuration offers (Hann, Hamming, Blackman, flat top, rectangular),
taken periodic (``fftbins=True``), is a short sum of cosines ``w[n] = sum_j c_j cos(2 pi j n / N)``.
Its spectrum has ``2 J + 1`` non-zero taps, so the spectrum of ``x * w`` is the spectrum of ``x``
convolved with those taps: a few passes over the one-sided spectrum instead of a second FFT.
The envelope needs the unwindowed spectrum anyway, so one ``rfft`` serves both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

C64 = npt.NDArray[np.complex64]
F32 = npt.NDArray[np.float32]
MAX_TAPS = 8  #: longest cosine sum handled here (flat top has 4)


class CosineWindowing:
    """Turns a batch of one-sided spectra ``rfft(x)`` (k, N//2 + 1) into ``rfft(x * w) / gain``.

    ``taps[j]`` (j = 0..J) is the window's DFT coefficient ``W[j] / N``, real and symmetric.
    Bins whose neighbours fall off either end of the one-sided spectrum take them from its
    conjugate symmetry (``X[-j] = conj(X[j])``, ``X[N - j] = conj(X[j])``). ``gain`` is a real
    constant of the window (its first side tap for three-tap windows, else 1) left out of the
    result, which saves a pass: callers fold it into their scale factors.
    """

    def __init__(self, taps: npt.NDArray[np.floating[Any]], n: int) -> None:
        self.n = n
        self.f = n // 2 + 1
        self.taps = [np.float32(t) for t in taps]
        self.j = len(self.taps) - 1
        j, f = self.j, self.f
        # edge bins: full tap neighbourhoods, as indices into the one-sided spectrum + conj mask
        edges = sorted({*range(min(j, f)), *range(max(f - j, 0), f)})
        src = np.zeros((len(edges), 2 * j + 1), dtype=np.int64)
        conj = np.zeros((len(edges), 2 * j + 1), dtype=bool)
        for r, b in enumerate(edges):
            for c, t in enumerate(range(-j, j + 1)):
                i = (b + t) % n  # index into the full N-point spectrum
                src[r, c], conj[r, c] = (i, False) if i < f else (n - i, True)
        self.edges = np.array(edges, dtype=np.int64)
        self.edge_src, self.edge_conj = src, conj
        #: three-tap windows come out divided by their side tap; Hann (h0 = -2 h1) is then the
        #: second difference of the spectrum, two passes
        self.gain = float(self.taps[1]) if j == 1 else 1.0
        self.second_difference = j == 1 and self.taps[0] == -2 * self.taps[1]
        sym = [*self.taps[:0:-1], *self.taps]
        self.edge_taps = np.array(sym, dtype=np.complex64) / np.float32(self.gain)

    @classmethod
    def for_window(cls, w: npt.NDArray[np.floating[Any]]) -> CosineWindowing | None:
        """The convolution for window ``w`` (length N), or None when ``w`` is not a cosine sum
        of at most ``MAX_TAPS`` terms (then window in the time domain instead)."""
        n = w.shape[0]
        coef = np.fft.rfft(np.asarray(w, dtype=np.float64)) / n
        big = np.nonzero(np.abs(coef) > 1e-6 * np.abs(coef).max())[0]
        j = int(big.max()) if big.size else 0
        if j > MAX_TAPS or 2 * j + 1 > n // 2 or np.abs(coef.imag).max() > 1e-6:
            return None
        taps = coef.real[: j + 1]
        k = np.arange(n)
        rebuilt = taps[0] + 2 * sum(
            (t * np.cos(2 * np.pi * i * k / n) for i, t in enumerate(taps[1:], 1)),
            np.zeros(n),
        )
        if np.abs(rebuilt - w).max() > 1e-6 * max(np.abs(w).max(), 1.0):
            return None
        return cls(taps, n)

    def apply(self, raw: C64, out: C64, tmp: F32 | None) -> C64:
        """Write the windowed spectrum of ``raw`` (k, F) complex64, divided by ``gain``, into
        ``out`` (k, F) complex64 and return it; ``tmp`` is scratch of at least (k, 2F)
        float32, needed for Hann and for windows of more than three taps. For the rectangular
        window (no side taps) ``raw`` itself is returned."""
        if self.j == 0 and self.taps[0] == 1.0:
            return raw
        f = self.f
        r = raw.view(np.float32)  # (k, 2F): re, im interleaved, so one bin is two columns
        o = out.view(np.float32)
        if self.j == 1 and f > 2 and self.second_difference and tmp is not None:
            d = np.subtract(r[:, 2:], r[:, :-2], out=tmp[:, : 2 * f - 2])  # X[b+1] - X[b]
            np.subtract(d[:, 2:], d[:, :-2], out=o[:, 2:-2])  # X[b+1] - 2 X[b] + X[b-1]
        elif self.j == 1 and f > 2:  # Hamming (or Hann without scratch): three passes
            h0, h1 = self.taps
            np.multiply(r, h0 / h1, out=o)
            o[:, 2:-2] += r[:, :-4]
            o[:, 2:-2] += r[:, 4:]
        else:
            if tmp is None:
                raise ValueError("a window of more than three taps needs scratch")
            self._general(r, o, tmp)
        if self.edges.size:
            e = raw[:, self.edge_src]  # (k, edges, 2J+1)
            np.conjugate(e, out=e, where=self.edge_conj)
            out[:, self.edges] = np.einsum("kbt,t->kb", e, self.edge_taps)
        return out

    def _general(self, r: F32, o: F32, tmp: F32) -> None:
        """Interior bins for any number of taps, on the float views of the spectra."""
        f = self.f
        np.multiply(r, self.taps[0], out=o)
        for j in range(1, self.j + 1):
            width = 2 * f - 4 * j  # interior bins j .. F-1-j, both neighbours in range
            if width <= 0:
                break
            t = tmp[:, :width]
            np.add(r[:, :width], r[:, 4 * j :], out=t)
            t *= self.taps[j]
            o[:, 2 * j : 2 * f - 2 * j] += t
