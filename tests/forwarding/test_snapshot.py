"""Snapshots: raw samples from the tap's ring, captured on a raised alert and for scores in the
ambiguous band (rate-limited), with their context; int16 and float32 round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.records import (
    AlertEvent,
    AlertState,
    FeatureFrame,
    Reading,
    SampleBlock,
    Score,
    Severity,
)
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.hub import ForwardingHub
from gateway.forwarding.ring import RawTap, TappedQueue
from gateway.forwarding.snapshot import decode_channel

T0 = 1_700_000_000_000_000_000
FS = 1000.0


def hub(dtype: str) -> ForwardingHub:
    cfg = ForwardingConfig.model_validate(
        {
            "ring_s": 2.0,
            "default": {
                "snapshot": {
                    "enabled": True,
                    "length_s": 0.5,
                    "dtype": dtype,
                    "ambiguous_band": [0.4, 0.6],
                    "min_interval_s": 10.0,
                }
            },
            "assets": {"m2": {"snapshot": {"enabled": False}}},  # the rest inherited
        }
    )
    return ForwardingHub(cfg, {"m1": ["m1_vib", "m1_temp"], "m2": ["m2_vib"]}, {"m1_vib", "m2_vib"})


def signal(n: int, start: int) -> np.ndarray:
    t = np.arange(start, start + n) / FS
    return (3.0 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
async def test_snapshots_on_alert_and_in_the_ambiguous_band(dtype: str) -> None:
    h = hub(dtype)
    q = TappedQueue("samples", 1000, "block", h.tap)
    for k in range(30):  # 3 s of 100-sample blocks; the ring keeps the last 2 s
        await q.put(
            SampleBlock("m1_vib", T0 + k * 100_000_000, 0, FS, signal(100, k * 100), k * 100)
        )
        await q.put(
            SampleBlock("m2_vib", T0 + k * 100_000_000, 0, FS, signal(100, k * 100), k * 100)
        )
        await q.put(Reading("m1_temp", T0, T0, 40.0))
    assert h.tap.collected_bytes == {"m1": 30 * 400 + 30 * 8, "m2": 30 * 400}
    assert "m2_vib" not in h.tap.rings  # snapshots off for m2: no ring kept

    frame = FeatureFrame(
        "m1", "m1_vib", T0, T0 + 10**9, T0, "v1", ("rms",), ("g",), np.array([2.1])
    )
    score = Score("m1", T0 + 2 * 10**9, "iforest", "1.2.0", 0.5, 0.7)
    calm = Score("m1", T0 + 3 * 10**9, "iforest", "1.2.0", 0.1, 0.7)
    again = Score("m1", T0 + 4 * 10**9, "iforest", "1.2.0", 0.55, 0.7)  # within min_interval_s
    shadow = Score("m1", T0 + 5 * 10**9, "iforest", "1.3.0", 0.5, 0.7, shadow=True)
    alert = AlertEvent(
        "a1",
        "m1",
        "vib_high",
        AlertState.RAISED,
        Severity.ALARM,
        T0 + 3 * 10**9,
        "high",
        model_version="1.2.0",
    )
    other = AlertEvent("a2", "m2", "vib_high", AlertState.RAISED, Severity.ALARM, T0, "high")
    rows = await h.derive([frame, score, calm, again, shadow, alert, other])
    assert [(r.kind, r.asset, r.payload["trigger"]) for r in rows] == [
        ("snapshot", "m1", "ambiguous"),
        ("snapshot", "m1", "alert"),
    ]
    amb, al = rows
    assert amb.payload["snapshot_id"] == f"m1-ambiguous-{T0 + 2 * 10**9}"
    assert amb.payload["score"] == 0.5
    assert amb.payload["threshold"] == 0.7
    assert amb.model_version == "1.2.0"
    assert amb.payload["features"] == {"m1_vib": {"rms": 2.1}, "m1_temp": {}}
    assert al.payload["alert_id"] == "a1"
    assert al.payload["score"] == 0.55  # the asset's latest score at the alert
    chans = al.payload["channels"]
    assert isinstance(chans, dict)
    assert list(chans) == ["m1_vib"]  # waveform channels only
    ch = chans["m1_vib"]
    assert (ch["n"], ch["sample_rate_hz"], ch["dtype"]) == (500, FS, dtype)
    assert ch["start_ts_ns"] == T0 + 25 * 100_000_000  # the last 0.5 s
    got = decode_channel(ch["data"], dtype, ch["scale"])
    want = signal(500, 2500)
    tol = 3.0 / 32767 if dtype == "int16" else 0.0
    np.testing.assert_allclose(got, want, atol=tol * 1.01)
    assert len(ch["data"]) < 500 * 4  # compressed (base64 included)
    assert h.snapshots.captured == {"m1": 2}


@pytest.mark.parametrize("policy", ["block", "drop_oldest"])
async def test_a_batch_put_is_tapped_once_per_item(policy: str) -> None:
    tap = RawTap({"m1_vib": "m1", "m1_temp": "m1"}, 2.0, {"m1_vib"})
    q = TappedQueue("samples", 1000, policy, tap)  # type: ignore[arg-type]
    blocks = [SampleBlock("m1_vib", T0, 0, FS, signal(100, k * 100), k * 100) for k in range(3)]
    await q.put_many([*blocks, Reading("m1_temp", T0, T0, 40.0)])
    assert tap.collected_bytes == {"m1": 3 * 400 + 8}
    assert len(q) == 4
