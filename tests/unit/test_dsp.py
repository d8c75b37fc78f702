"""Framing (overlap, gaps) and time-domain features against closed-form values."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.records import Quality, SampleBlock
from gateway.dsp import features as F
from gateway.dsp.framing import Framer

FS = 1000.0


def block(
    seq: int, n: int, quality: Quality = Quality.GOOD, start_value: float = 0.0
) -> SampleBlock:
    samples = (start_value + np.arange(n)).astype(np.float32)
    return SampleBlock("c", 10**18 + round(seq / FS * 1e9), 0, FS, samples, seq, quality)


def test_overlapping_windows_across_blocks() -> None:
    fr = Framer(window=100, hop=50)
    assert fr.push(block(0, 60, start_value=0)) is None
    w = fr.push(block(60, 100, start_value=60))
    assert w is not None
    assert len(w) == 2  # 160 samples: windows at 0 and 50
    np.testing.assert_array_equal(w.data[0], np.arange(100))
    np.testing.assert_array_equal(w.data[1], np.arange(50, 150))
    np.testing.assert_array_equal(w.start_seq, [0, 50])
    assert w.start_ts_ns[1] - w.start_ts_ns[0] == 50_000_000  # 50 samples at 1 kHz
    w2 = fr.push(block(160, 40, start_value=160))
    assert w2 is not None
    np.testing.assert_array_equal(w2.data[0], np.arange(100, 200))  # continues seamlessly


def test_no_window_spans_a_gap() -> None:
    fr = Framer(window=100, hop=100)
    assert fr.push(block(0, 80)) is None
    w = fr.push(block(90, 100, start_value=90))  # 10 samples missing
    assert fr.gaps == 1
    assert w is not None
    assert len(w) == 1
    np.testing.assert_array_equal(w.data[0], np.arange(90, 190))


def test_bad_quality_block_restarts_framing() -> None:
    fr = Framer(window=100, hop=100)
    fr.push(block(0, 80))
    assert fr.push(block(80, 80, Quality.BAD)) is None
    assert fr.push(block(160, 50, start_value=160)) is None  # 50 < window after restart
    assert fr.gaps == 1


def test_time_domain_features_of_a_sine() -> None:
    t = np.arange(4096) / 4096.0
    x = (2.0 * np.sin(2 * np.pi * 32 * t) + 0.5)[None, :]
    f = dict(zip([n for n, _ in F.TIME_DOMAIN], F.time_domain(x)[0], strict=True))
    assert f["mean"] == pytest.approx(0.5, abs=1e-9)
    # float32 features: within a few float32 roundings
    assert f["rms"] == pytest.approx(np.sqrt(2.0**2 / 2 + 0.25), rel=1e-6)
    assert f["peak"] == pytest.approx(2.5, rel=1e-3)
    assert f["peak_to_peak"] == pytest.approx(4.0, rel=1e-3)
    assert f["kurtosis"] == pytest.approx(1.5, rel=1e-5)  # sine: 3/2 (float32 features)
    assert f["skewness"] == pytest.approx(0.0, abs=1e-6)


def test_time_domain_features_of_noise_and_constants() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, 200_000), np.full(200_000, 3.0)])
    feats = F.time_domain(x)
    assert feats[0, 5] == pytest.approx(3.0, abs=0.05)  # Gaussian kurtosis
    assert feats[1].tolist() == [3.0, 3.0, 3.0, 0.0, 1.0, 0.0, 0.0]


def test_units_resolve_placeholder() -> None:
    assert F.units_for(F.SCALAR, "degC") == ("degC", "degC/min")
    assert F.units_for(F.TIME_DOMAIN, "g")[:2] == ("g", "g")
