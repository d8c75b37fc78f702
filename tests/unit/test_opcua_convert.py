"""Pure parts of the OPC UA collector: status codes, timestamps, values, waveform numbering,
and the device config checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from pydantic import ValidationError

from gateway.collectors.opcua.collector import _Counter
from gateway.collectors.opcua.config import OpcUaDevice, OpcUaNode
from gateway.collectors.opcua.convert import (
    Placement,
    WaveformStream,
    datetime_ns,
    quality_of,
    reading_value,
    source_ts_ns,
    waveform_samples,
)
from gateway.config.loader import load_config
from gateway.core.errors import ConfigError
from gateway.core.records import Quality


def test_status_codes_become_quality() -> None:
    assert quality_of(None) == Quality.GOOD
    assert quality_of(ua.StatusCode(StatusCodes.Good)) == Quality.GOOD
    assert quality_of(ua.StatusCode(StatusCodes.UncertainLastUsableValue)) == Quality.UNCERTAIN
    assert quality_of(ua.StatusCode(StatusCodes.UncertainSensorNotAccurate)) == Quality.UNCERTAIN
    assert quality_of(ua.StatusCode(StatusCodes.BadSensorFailure)) == Quality.BAD
    assert quality_of(ua.StatusCode(StatusCodes.BadNodeIdUnknown)) == Quality.BAD
    assert quality_of(ua.StatusCode(StatusCodes.GoodClamped)) == Quality.GOOD


def test_timestamps_in_ns() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert datetime_ns(t) == round(t.timestamp() * 1e6) * 1000
    assert datetime_ns(t.replace(tzinfo=None)) == datetime_ns(t)
    assert datetime_ns(None) is None
    dv = ua.DataValue(ua.Variant(1.0), ServerTimestamp=t)  # type: ignore[arg-type]
    assert source_ts_ns(dv, 7) == datetime_ns(t)
    later = t + timedelta(seconds=1)
    dv = ua.DataValue(ua.Variant(1.0), SourceTimestamp=later, ServerTimestamp=t)  # type: ignore[arg-type]
    assert source_ts_ns(dv, 7) == datetime_ns(later)
    assert source_ts_ns(ua.DataValue(ua.Variant(1.0)), 7) == 7
    assert source_ts_ns(None, 7) == 7


def test_values() -> None:
    assert reading_value(3) == 3.0
    assert reading_value(True) == 1.0
    assert reading_value(2.5) == 2.5
    assert reading_value("x") is None
    assert reading_value(None) is None
    s = waveform_samples([1, 2.5, -3])
    assert s is not None
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s, [1, 2.5, -3])
    assert waveform_samples(["a"]) is None
    assert waveform_samples([[1.0], [2.0]]) is None
    assert waveform_samples(4.0) is None


def test_stream_numbered_by_time_from_the_previous_block() -> None:
    s = WaveformStream("v", 25_600.0)
    t0 = 1_700_000_000_123_456_789
    assert s.place(2560, t0) == Placement(0)
    # each block 0.1 s later, with the +-1 us jitter of a microsecond clock
    assert s.place(2560, t0 + 100_000_000 + 1000) == Placement(2560)
    assert s.place(2560, t0 + 200_000_000 - 1000) == Placement(5120)
    assert s.place(2560, t0 + 200_000_000 - 1000) is None  # a repeat is dropped
    assert s.place(2560, t0 + 400_000_000) == Placement(10_240, lost=2560)  # one block lost
    assert s.next_sequence == 12_800


def test_stream_by_counter_overlap_and_restart() -> None:
    s = WaveformStream("v", 1000.0)
    assert s.place(100, 0, counter=1000) == Placement(1000)
    assert s.place(100, 0, counter=1000) is None
    assert s.place(100, 0, counter=1050) == Placement(1050, skip=50)
    assert s.next_sequence == 1150
    assert s.place(100, 0, counter=0) == Placement(0)  # far back: the stream restarted
    assert s.next_sequence == 100


def test_counter_pairs_by_timestamp() -> None:
    c = _Counter(keep=3)
    c.add(10, 0)
    c.add(20, 512)
    c.add(30, 1024)
    assert c.sequence_for(20, first_block=False) == 512
    assert c.sequence_for(25, first_block=False) is None
    assert c.sequence_for(5, first_block=True) == 1024  # nothing matches: the latest
    c.add(40, 1536)
    assert c.sequence_for(10, first_block=False) is None  # only the last 3 are kept


def node(**kw: object) -> dict[str, object]:
    return {"channel": "c", "namespace_uri": "urn:x", "node_id": "s=a", **kw}


def test_node_config_rules() -> None:
    OpcUaNode.model_validate(node(node_id=None, browse_path=["A", "B"]))
    OpcUaNode.model_validate(node(node_id="i=2258"))
    OpcUaNode.model_validate(node(node_id="g=72962b91-fa75-4ae6-8d28-b404dc7daf63"))
    bad = [
        (node(browse_path=["A"]), "exactly one of 'node_id' and 'browse_path'"),
        (node(node_id="ns=2;s=a"), "String should match pattern"),
        (node(sequence_node_id="s=n"), "waveform nodes only"),
        (node(kind="waveform", deadband=0.1), "reading nodes only"),
    ]
    for raw, message in bad:
        with pytest.raises(ValidationError, match=message):
            OpcUaNode.model_validate(raw)
    with pytest.raises(ValidationError, match="user name or a certificate"):
        OpcUaDevice.model_validate(
            {
                "endpoint": "opc.tcp://h:4840",
                "username": "u",
                "password": "p",
                "user_certificate": "c.der",
                "user_private_key": "k.pem",
            }
        )


def test_node_unit_and_rate_must_match_the_channel(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text(
        """
[channels.t]
kind = "temperature"
[channels.v]
kind = "vibration"
sample_rate_hz = 5120
[assets.a]
channels = ["t", "v"]
[devices.opcua.plc]
endpoint = "opc.tcp://127.0.0.1:4840"
[[devices.opcua.plc.nodes]]
channel = "t"
namespace_uri = "urn:x"
node_id = "s=T"
unit = "degF"
[[devices.opcua.plc.nodes]]
channel = "v"
namespace_uri = "urn:x"
node_id = "s=V"
kind = "waveform"
sample_rate_hz = 25600
"""
    )
    with pytest.raises(ConfigError) as exc:
        load_config(f, env={})
    assert exc.value.errors == [
        ("devices.opcua.plc.nodes.0.unit", "'degF' differs from channel 't' unit 'degC'"),
        (
            "devices.opcua.plc.nodes.1.sample_rate_hz",
            "25600.0 differs from channel 'v' rate 5120.0 Hz",
        ),
    ]


def test_numpy_arrays_only_in_the_collectors_context() -> None:
    from asyncua.common.utils import Buffer
    from asyncua.ua import ua_binary

    from gateway.collectors.opcua import fastarrays

    fastarrays.install()
    fastarrays.install()  # idempotent

    def roundtrip(v: ua.Variant) -> object:
        return ua_binary.variant_from_binary(Buffer(ua_binary.variant_to_binary(v))).Value

    floats = ua.Variant([1.5, -2.25, 3.0], ua.VariantType.Float)
    assert roundtrip(floats) == [1.5, -2.25, 3.0]  # anyone else: asyncua's lists
    token = fastarrays.NUMPY_ARRAYS.set(True)
    try:
        got = roundtrip(floats)
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.float32
        assert not got.flags.writeable
        np.testing.assert_array_equal(got, [1.5, -2.25, 3.0])
        assert waveform_samples(got) is got  # no copy on the hot path
        doubles = roundtrip(ua.Variant([1e300, 2.0], ua.VariantType.Double))
        assert isinstance(doubles, np.ndarray)
        assert doubles.dtype == np.float64
        assert roundtrip(ua.Variant([1, 2], ua.VariantType.Int32)) == [1, 2]
        assert roundtrip(ua.Variant(None, ua.VariantType.Float, is_array=True)) is None
        matrix = roundtrip(ua.Variant([[1.0, 2.0], [3.0, 4.0]], ua.VariantType.Double))
        assert isinstance(matrix, list)
        assert [list(row) for row in matrix] == [[1.0, 2.0], [3.0, 4.0]]
        assert waveform_samples(matrix) is None
    finally:
        fastarrays.NUMPY_ARRAYS.reset(token)
    assert roundtrip(floats) == [1.5, -2.25, 3.0]


async def test_publish_gaps_and_overflow_count_as_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.collectors.opcua import collector as col_mod
    from gateway.collectors.opcua.collector import OpcUaCollector, _SubState
    from gateway.config.plant import Channel
    from gateway.core.clock import FakeClock
    from gateway.runtime.queues import BoundedQueue

    cfg = OpcUaDevice.model_validate({"endpoint": "opc.tcp://h:1", "nodes": [node(channel="t")]})
    c = OpcUaCollector(
        "d", cfg, {"t": Channel(kind="temperature")}, BoundedQueue("q", 10), FakeClock()
    )
    state = _SubState(sub=None, keepalive_s=1.0)  # type: ignore[arg-type]  # the sink alone
    sink = c._make_sink(state)
    monkeypatch.setattr(col_mod, "EVENT_QUEUE", 3)

    def publish(seq: int, items: int) -> None:
        notes = [ua.MonitoredItemNotification(ClientHandle=1) for _ in range(items)]
        msg = ua.NotificationMessage(
            SequenceNumber=seq, NotificationData=[ua.DataChangeNotification(MonitoredItems=notes)]
        )
        sink(ua.PublishResult(7, NotificationMessage=msg))

    publish(1, 1)
    publish(2, 1)
    assert c.counters.missed_notifications == 0
    publish(5, 1)  # notification messages 3 and 4 never arrived
    assert c.counters.missed_notifications == 2
    publish(6, 2)  # 5 queued items, room for 3: the 2 oldest go
    assert c.counters.missed_notifications == 4
    assert len(state.items) == 3
    assert state.ready.is_set()
    status = ua.StatusChangeNotification(Status=ua.StatusCode(StatusCodes.BadTimeout))
    sink(ua.PublishResult(7, NotificationMessage=ua.NotificationMessage(NotificationData=[status])))
    assert state.ended == "subscription ended (BadTimeout)"
