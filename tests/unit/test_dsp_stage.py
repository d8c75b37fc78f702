"""The DSP processor: streaming equals batch for any cut of the signal; speed from a channel."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.plant import Asset, Bearing, Channel
from gateway.core.records import Reading, SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.stage import DspProcessor

FS = 5120.0
CFG = DspConfig(window=256, hop=128)
CH = {"v": Channel(kind="vibration", sample_rate_hz=FS), "spd": Channel(kind="speed")}
ASSETS = {
    "a": Asset(
        channels=["v", "spd"],
        speed_channel="spd",
        bearing=Bearing(balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04),
    )
}
SIGNAL = np.random.default_rng(7).standard_normal(4000).astype(np.float32)


def proc() -> DspProcessor:
    return DspProcessor(CFG, CH, ASSETS, now_ns=lambda: 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
def test_streaming_equals_batch_whatever_the_block_sizes(cuts: list[int]) -> None:
    p = proc()
    p.shaft_hz["a"] = 25.0
    frames = []
    pos = 0
    for size in [*cuts, len(SIGNAL)]:
        chunk = SIGNAL[pos : pos + size]
        if chunk.size == 0:
            break
        frames += p.process(
            [SampleBlock("v", 10**18 + round(pos / FS * 1e9), 0, FS, chunk.copy(), pos)]
        )
        pos += chunk.size
    windows = np.lib.stride_tricks.sliding_window_view(SIGNAL, 256)[::128]
    batch = ChannelExtractor(CH["v"], ASSETS["a"], CFG).compute(windows, 25.0)
    assert len(frames) == windows.shape[0]
    np.testing.assert_allclose(np.array([f.values for f in frames]), batch, rtol=2e-5, atol=1e-7)
    assert [f.start_ts_ns - frames[0].start_ts_ns for f in frames[:2]] == [0, 25_000_000]


def test_order_features_follow_the_speed_channel() -> None:
    p = proc()
    t = np.arange(1024) / FS
    x = (0.5 * np.sin(2 * np.pi * 40.0 * t)).astype(np.float32)
    first = p.process([SampleBlock("v", 0, 0, FS, x[:512], 0)])
    names = first[0].names
    assert np.isnan(first[0].values[names.index("order_1x_amp")])  # speed not yet known
    p.process([Reading("spd", 1, 1, 40.0)])
    later = p.process([SampleBlock("v", 0, 0, FS, x[512:], 512)])
    assert later[0].as_dict()["order_1x_amp"] > 0.3
    assert "env_bpfo_amp" in names


def test_a_speed_channel_in_rpm_shared_by_two_assets() -> None:
    ch = {
        "v1": Channel(kind="vibration", sample_rate_hz=FS),
        "v2": Channel(kind="vibration", sample_rate_hz=FS),
        "rpm": Channel(kind="speed", unit="rpm"),
    }
    assets = {
        "motor": Asset(channels=["v1", "rpm"], speed_channel="rpm"),
        "pump": Asset(channels=["v2"], speed_channel="rpm"),
    }
    p = DspProcessor(CFG, ch, assets, now_ns=lambda: 0)
    p.process([Reading("rpm", 1, 1, 1500.0)])
    assert p.shaft_hz == {"motor": 25.0, "pump": 25.0}
