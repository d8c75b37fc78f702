"""Window functions for spectral analysis, periodic ("DFT-even", as ``scipy.signal.get_window``
with ``fftbins=True``), in float64.

Generalised cosine windows computed with numpy alone: the feature path then does not load
``scipy.signal`` (and the tens of MiB of scipy it pulls in) into the gateway process.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: cosine-sum coefficients a_k of w[n] = sum_k (-1)^k a_k cos(2 pi k n / N)
COSINE_SUMS: dict[str, tuple[float, ...]] = {
    "rectangular": (1.0,),
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "blackman": (0.42, 0.50, 0.08),
    # scipy.signal.windows.flattop (Matlab's coefficients)
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
}


def periodic_window(name: str, n: int) -> npt.NDArray[np.float64]:
    """The ``n``-point periodic window ``name`` (a key of ``COSINE_SUMS``; ``KeyError``
    otherwise)."""
    coeffs = COSINE_SUMS[name]
    phase = 2.0 * np.pi * np.arange(n) / n
    w = np.zeros(n)
    for k, a in enumerate(coeffs):
        w += (-1) ** k * a * np.cos(k * phase)
    return w
