"""Health assessment and the Prometheus rendering of status snapshots."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.runtime.health import CRASH_LOOP_RESTARTS, assess
from gateway.runtime.metrics import render


def snap(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "devices": {
            "m1": {"state": "connected", "reads": 10, "read_seconds": 0.02, "stale": []},
            "m2": {"state": "connected", "reads": 4, "read_seconds": 0.0, "stale": []},
        },
        "stages": {"dsp": {"state": "running", "restarts": 0, "last_error": None}},
        "queues": {"samples": {"depth": 3, "size": 512, "dropped": 0, "accepted": 9}},
        "store": {"state": "ok", "written": 5, "pending": 0, "write_errors": 0, "encode_errors": 2},
        "loop_lag": {"last_s": 0.001, "max_s": 0.01, "mean_s": 0.002},
        "dsp": {"frames": 7, "gaps": {"m1_vib": 2}},
    }
    base.update(over)
    return base


def test_all_connected_is_ok() -> None:
    h = assess(snap())
    assert (h.state, h.reasons) == ("ok", ())


def test_one_device_down_degrades_all_down_fails() -> None:
    s = snap()
    s["devices"]["m2"]["state"] = "unreachable"
    h = assess(s)
    assert h.state == "degraded"
    assert h.reasons == ("device(s) unreachable: m2",)
    s["devices"]["m1"]["state"] = "unreachable"
    assert assess(s).state == "failing"


def test_store_failing_and_crash_loop_fail() -> None:
    assert assess(snap(store={"state": "failing"})).state == "failing"
    looping = {"dsp": {"state": "backoff", "restarts": CRASH_LOOP_RESTARTS, "last_error": "X"}}
    h = assess(snap(stages=looping))
    assert h.state == "failing"
    assert "crash-looping" in h.reasons[0]


def test_drops_count_only_since_the_previous_snapshot() -> None:
    before = snap(queues={"samples": {"dropped": 4}})
    now = snap(queues={"samples": {"dropped": 4}})
    assert assess(now, before).state == "ok"
    now = snap(queues={"samples": {"dropped": 6}})
    h = assess(now, before)
    assert (h.state, h.reasons) == ("degraded", ("queue samples dropped 2 item(s)",))


def test_lag_uplink_and_stale_degrade() -> None:
    assert assess(snap(loop_lag={"last_s": 0.9})).state == "degraded"
    assert assess(snap(uplink={"influxdb": {"state": "down"}})).state == "degraded"
    assert assess(snap(uplink={"influxdb": {"state": "up"}})).state == "ok"
    s = snap()
    s["devices"]["m1"]["stale"] = ["temp"]
    assert assess(s).reasons == ("device m1: stale values ['temp']",)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_carry_the_named_series() -> None:
    s = snap(
        health={"state": "degraded", "reasons": ["x"]},
        uplink={"influxdb": {"state": "down", "backlog": 42, "oldest_age_s": 12.5}},
        inference={
            "latency_s": 0.0004,
            "models": {"m1": {"active": {"id": "pump", "version": "3"}}},
        },
    )
    s["devices"]["m2"]["transient_errors"] = 3
    m = samples(render(lambda: s).decode())
    assert m[("pdm_device_state", (("device", "m1"), ("state", "connected")))] == 1.0
    assert m[("pdm_device_state", (("device", "m1"), ("state", "unreachable")))] == 0.0
    assert m[("pdm_device_read_latency_seconds", (("device", "m1"),))] == 0.002
    assert m[("pdm_device_errors_total", (("class", "transient"), ("device", "m2")))] == 3.0
    assert m[("pdm_channel_gaps_total", (("channel", "m1_vib"),))] == 2.0
    assert m[("pdm_queue_depth", (("queue", "samples"),))] == 3.0
    assert m[("pdm_loop_lag_seconds", (("stat", "max"),))] == 0.01
    assert m[("pdm_store_backlog_records", (("sink", "influxdb"),))] == 42.0
    assert m[("pdm_store_encode_errors_total", ())] == 2.0
    assert m[("pdm_store_backlog_oldest_age_seconds", (("sink", "influxdb"),))] == 12.5
    assert m[("pdm_uplink_state", (("sink", "influxdb"), ("state", "down")))] == 1.0
    assert m[("pdm_inference_latency_seconds", ())] == 0.0004
    key = (("asset", "m1"), ("model", "pump"), ("role", "active"), ("version", "3"))
    assert m[("pdm_model_active", key)] == 1.0
    assert m[("pdm_health", (("state", "degraded"),))] == 1.0
