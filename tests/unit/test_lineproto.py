"""Line protocol of journal rows: one measurement per kind, escaping, deterministic keys."""

from __future__ import annotations

import pytest

from gateway.core.records import ActionRecord, AlertState
from gateway.store.codec import record_row
from gateway.store.journal import Row, decode_payload, encode_payload
from gateway.uplink.influx import parse_retry_after
from gateway.uplink.lineproto import to_line
from tests.uplink.records import T0, alert, frame, score


def test_each_kind_has_its_measurement_tags_and_fields() -> None:
    f = to_line(record_row(frame(1, width=3)))
    assert f == f"feature,asset=m1,channel=m1_temp i=1.0,f0=1.0,f1=1.5,quality=0i {T0 + 10_000_000}"
    s = to_line(record_row(score(2)))
    assert s == (
        "score,asset=m1,channel=m1_vib,model_id=iforest,model_version=1.2.0 "
        f"score=2.0,threshold=0.5 {T0 + 20_000_000}"
    )
    a = to_line(record_row(alert(3, "sensor")))
    assert a.startswith(
        "sensor,alert_id=a3,asset=m2,channel=m2_vib,model_version=1.2.0,rule=vib_high,state=raised "
    )
    assert 'message="vibration high (3)",severity=3i,state_code=1i' in a
    act = ActionRecord(
        "a3",
        "m2",
        "vib_high",
        AlertState.RAISED,
        T0,
        "modbus://plc:502/1/coil/7",
        1.0,
        "failed",
        "device refused the write",
    )
    assert to_line(record_row(act)) == (
        "action,alert_id=a3,asset=m2,outcome=failed,rule=vib_high,transition=raised "
        'detail="device refused the write",target="modbus://plc:502/1/coil/7",value=1.0 '
        f"{T0}"
    )


def test_escaping_non_finite_values_and_determinism() -> None:
    r = Row(
        "feature",
        5,
        "pump 1",
        "a,b=c",
        {"features": {"rms": 1.5, "bad": None, "n": 3}, "quality": "uncertain"},
    )
    line = to_line(r)
    assert line == r"feature,asset=pump\ 1,channel=a\,b\=c rms=1.5,n=3.0,quality=1i 5"
    # stored and read back (NaN is stored as null): the same line, so a replay overwrites
    stored = Row(r.kind, r.ts_ns, r.asset, r.channel, decode_payload(encode_payload(r.payload)))
    assert to_line(stored) == line
    msg = Row("alert", 1, "m", "", {"state": "cleared", "message": 'say "hi" \\ ok'})
    assert r'message="say \"hi\" \\ ok"' in to_line(msg)
    with pytest.raises(ValueError, match="no field"):
        to_line(Row("other", 1, "m", "", {"text": "no numbers"}))


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after(None, 0.0) is None
