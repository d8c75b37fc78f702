"""The numpy window functions equal scipy's periodic windows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from gateway.dsp.config import DspConfig
from gateway.dsp.windows import COSINE_SUMS, periodic_window


@pytest.mark.parametrize("name", sorted(COSINE_SUMS))
@pytest.mark.parametrize("n", [64, 257, 4096])
def test_windows_match_scipy_periodic_windows(name: str, n: int) -> None:
    scipy_name = "boxcar" if name == "rectangular" else name
    want = signal.get_window(scipy_name, n, fftbins=True)
    np.testing.assert_allclose(periodic_window(name, n), want, rtol=0, atol=1e-9)


def test_every_configurable_window_exists() -> None:
    field = DspConfig.model_fields["window_function"]
    allowed = set(field.annotation.__args__)  # type: ignore[union-attr]
    assert allowed == set(COSINE_SUMS)


def test_unknown_window_is_refused() -> None:
    with pytest.raises(KeyError):
        periodic_window("kaiser", 64)
