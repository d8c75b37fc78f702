"""Batched feature computation: each window's features depend on that window alone, the
frequency-domain windowing equals windowing in time, returned arrays belong to the caller, and
the processor's cross-channel batches give the frames of item-by-item processing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from gateway.config.plant import Asset, Bearing, Channel
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.dsp.bearing import defect_orders
from gateway.dsp.config import DspConfig
from gateway.dsp.cosine import CosineWindowing
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.framing import Framer
from gateway.dsp.spectral import ROWS, SpectralPlan
from gateway.dsp.stage import DspProcessor

FS = 5120.0
ORDERS = defect_orders(9, 7.94, 39.04)
BEARING = Bearing(balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)


def signals(k: int, n: int, seed: int = 0) -> np.ndarray:
    """Noise, a modulated carrier and an offset tone: rows unlike each other."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    rows = []
    for i in range(k):
        kind = i % 3
        if kind == 0:
            x = rng.standard_normal(n)
        elif kind == 1:
            x = (1 + 0.5 * np.cos(2 * np.pi * 37 * t)) * np.cos(2 * np.pi * (900 + 50 * i) * t)
        else:
            x = 3.0 + np.sin(2 * np.pi * (20 + i) * t) + 0.01 * rng.standard_normal(n)
        rows.append(x)
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize(
    "plan",
    [
        SpectralPlan(FS, 512, has_speed=True, bearing_orders=ORDERS),
        SpectralPlan(FS, 512, window="flattop", shaft_hz=25.0, envelope_band=(800.0, 1600.0)),
        SpectralPlan(FS, 500, window="hamming", bands=[(0, 100), (50, 700), (300, 300)]),
        SpectralPlan(48_000.0, 1024, kind="acoustic"),
    ],
    ids=["auto-envelope", "fixed-envelope", "odd-n-overlapping-bands", "acoustic"],
)
def test_each_row_depends_on_that_row_alone(plan: SpectralPlan) -> None:
    x = signals(13, plan.n)
    shaft = np.linspace(10.0, 40.0, 13)
    shaft[3] = np.nan  # speed not known for this window
    batch = plan.compute(x, shaft if plan.has_speed else None)
    for i in range(x.shape[0]):
        alone = plan.compute(x[i : i + 1], shaft[i : i + 1] if plan.has_speed else None)
        np.testing.assert_array_equal(batch[i : i + 1], alone)
    if plan.has_speed and plan.shaft_hz is None:
        names = list(plan.names)
        assert np.isnan(batch[3, names.index("order_1x_amp")])
        assert np.isfinite(batch[2, names.index("order_1x_amp")])


def test_long_batches_and_offset_windows_keep_row_independence() -> None:
    """More windows than one pass holds, and windows with a large offset (their moments come
    from the mean-removed samples) mixed with zero-mean ones."""
    ex = ChannelExtractor(
        Channel(kind="vibration", sample_rate_hz=FS),
        Asset(channels=["v"], shaft_speed_hz=25.0, bearing=BEARING),
        DspConfig(window=256, hop=128),
    )
    x = signals(ROWS * 2 + 7, 256)
    batch = ex.compute(x)
    for i in (0, 1, 2, ROWS - 1, ROWS, 2 * ROWS + 6):
        np.testing.assert_array_equal(batch[i : i + 1], ex.compute(x[i : i + 1]))
    long = SpectralPlan(48_000.0, 1 << 18, kind="acoustic")
    assert long.rows == 4  # long windows: fewer per pass, the work buffers stay bounded
    y = np.random.default_rng(5).standard_normal((5, 1 << 18)).astype(np.float32)
    np.testing.assert_array_equal(long.compute(y)[4:], long.compute(y[4:]))
    kurt, skew = ex.names.index("kurtosis"), ex.names.index("skewness")
    offset = x[2].astype(np.float64)  # 3 + sine: the offset path
    d = offset - offset.mean()
    assert batch[2, kurt] == pytest.approx((d**4).mean() / (d**2).mean() ** 2, rel=1e-4)
    assert batch[2, skew] == pytest.approx((d**3).mean() / (d**2).mean() ** 1.5, abs=1e-3)


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "flattop", "rectangular"])
@pytest.mark.parametrize("n", [64, 65, 4096])
def test_frequency_domain_windowing_equals_time_domain(window: str, n: int) -> None:
    w = np.ones(n) if window == "rectangular" else signal.get_window(window, n)
    conv = CosineWindowing.for_window(w)
    assert conv is not None
    x = signals(4, n) + np.float32(2.0)
    raw = scipy.fft.rfft(x, axis=1)
    got = conv.apply(raw, np.empty_like(raw), np.empty((4, 2 * raw.shape[1]), np.float32))
    want = scipy.fft.rfft(x.astype(np.float64) * w, axis=1)
    assert np.abs(got * conv.gain - want).max() <= 1e-6 * np.abs(want).max()
    if conv.j == 1:  # without scratch: the three-pass form, same result
        plain = conv.apply(raw, np.empty_like(raw), None)
        assert np.abs(plain - got).max() <= 1e-6 * np.abs(got).max()


def test_a_window_that_is_no_cosine_sum_is_applied_in_time() -> None:
    assert CosineWindowing.for_window(signal.get_window(("kaiser", 8.0), 256)) is None


def test_returned_features_are_owned_by_the_caller() -> None:
    ex = ChannelExtractor(
        Channel(kind="vibration", sample_rate_hz=FS),
        Asset(channels=["v"], shaft_speed_hz=25.0, bearing=BEARING),
        DspConfig(window=512, hop=256),
    )
    x = signals(4, 512)
    first = ex.compute(x)
    kept = first.copy()
    ex.compute(signals(4, 512, seed=9))  # same batch size: the same work buffers
    np.testing.assert_array_equal(first, kept)
    out = np.full((4, len(ex.names)), -1.0)
    assert ex.compute(x, out=out) is out
    np.testing.assert_array_equal(out, kept)


def test_framer_grows_for_a_long_block_and_keeps_the_leftover() -> None:
    fr = Framer(window=100, hop=40)
    x = np.arange(1000, dtype=np.float32)
    w = fr.push(SampleBlock("c", 0, 0, 1000.0, x[:730], 0))
    assert w is not None
    assert len(w) == 16  # starts 0, 40, .., 600
    np.testing.assert_array_equal(w.data[-1], x[600:700])
    w2 = fr.push(SampleBlock("c", 0, 0, 1000.0, x[730:], 730))
    assert w2 is not None
    np.testing.assert_array_equal(w2.data[0], x[640:740])
    np.testing.assert_array_equal(w2.start_seq, 640 + 40 * np.arange(len(w2)))
    assert not w2.data.flags.writeable


CHANNELS = {
    "v1": Channel(kind="vibration", sample_rate_hz=FS),
    "v2": Channel(kind="vibration", sample_rate_hz=FS),
    "v3": Channel(kind="vibration", sample_rate_hz=FS, unit="m/s2"),
    "mic": Channel(kind="acoustic", sample_rate_hz=FS),
    "spd": Channel(kind="speed"),
}
ASSETS = {
    "motor": Asset(channels=["v1", "v2", "spd"], speed_channel="spd", bearing=BEARING),
    "fan": Asset(channels=["v3", "mic"], shaft_speed_hz=12.5),
}
CFG = DspConfig(window=256, hop=128)
STREAMS = {c: signals(1, 3000, seed=i)[0] for i, c in enumerate(["v1", "v2", "v3", "mic"])}


def same_frames(got: list[FeatureFrame], want: list[FeatureFrame]) -> None:
    def meta(f: FeatureFrame) -> tuple[object, ...]:
        return (f.channel, f.asset, f.start_ts_ns, f.end_ts_ns, f.names, f.units, f.quality)

    assert [meta(f) for f in got] == [meta(f) for f in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.values, w.values)  # NaN (speed unknown) equals NaN


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["v1", "v2", "v3", "mic", "spd"]), st.integers(1, 80)),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 20),
)
def test_cross_channel_batches_give_the_frames_of_one_item_at_a_time(
    steps: list[tuple[str, int]], batch: int
) -> None:
    pos = dict.fromkeys(STREAMS, 0)
    items: list[SampleBlock | Reading] = []
    for ch, size in steps:
        if ch == "spd":
            items.append(Reading("spd", 10**9 + size, 0, 10.0 + size / 10))
            continue
        chunk = STREAMS[ch][pos[ch] : pos[ch] + size]
        quality = {0: Quality.UNCERTAIN, 1: Quality.BAD}.get(size % 7, Quality.GOOD)
        items.append(SampleBlock(ch, pos[ch] * 1000, 0, FS, chunk.copy(), pos[ch], quality))
        pos[ch] += chunk.size
    for ch, x in STREAMS.items():  # the rest in one block: at least 600 samples
        items.append(SampleBlock(ch, pos[ch] * 1000, 0, FS, x[pos[ch] :].copy(), pos[ch]))
    one = DspProcessor(CFG, CHANNELS, ASSETS, now_ns=lambda: 0)
    batched = DspProcessor(CFG, CHANNELS, ASSETS, now_ns=lambda: 0)
    singly = [f for item in items for f in one.process([item])]
    grouped = [
        f for i in range(0, len(items), batch) for f in batched.process(items[i : i + batch])
    ]
    assert {f.channel for f in singly} >= set(STREAMS)
    same_frames(grouped, singly)


def test_channels_with_equal_settings_share_one_plan() -> None:
    p = DspProcessor(CFG, CHANNELS, ASSETS, now_ns=lambda: 0)
    assert p.extractors["v1"].plan is p.extractors["v2"].plan  # same asset, same settings
    assert p.extractors["v3"].plan is not p.extractors["v1"].plan  # another shaft and bearing
    assert p.extractors["v3"].units[1] == "m/s2"  # the unit stays the channel's own
