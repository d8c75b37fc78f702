"""The gateway's OPC UA server against a real asyncua client on loopback: browse, read,
subscribe (score-to-subscriber latency), alert events and acknowledgement, staleness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaError

from gateway.alerts.config import AlertsConfig
from gateway.alerts.stage import AlertStage, Record, Scored
from gateway.config.plant import Asset, Channel
from gateway.core.clock import FakeClock
from gateway.core.records import FeatureFrame, Quality, Score
from gateway.demo import free_port
from gateway.dsp.config import DspConfig
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.opcua_server.layout import layout_from_config, unece_unit_id
from gateway.opcua_server.server import GatewayOpcUaServer
from gateway.runtime.queues import BoundedQueue

GUARD_S = 60.0
NS = "urn:test:pdm"
ASSETS = {"m1": Asset(channels=["m1_vib", "m1_temp"]), "m2": Asset(channels=["m2_temp"])}
CHANNELS = {
    "m1_vib": Channel(kind="vibration", sample_rate_hz=5120),
    "m1_temp": Channel(kind="temperature"),
    "m2_temp": Channel(kind="temperature"),
}
ALERTS = AlertsConfig.model_validate(
    {
        "rules": {
            "anomaly": {
                "asset": "m1",
                "raise_level": 0.8,
                "clear_level": 0.5,
                "on_n": 1,
                "on_m": 1,
                "off_n": 1,
                "off_m": 1,
                "severity": "alarm",
            },
        }
    }
)


@dataclass
class Rig:
    server: GatewayOpcUaServer
    stage: AlertStage
    inp: BoundedQueue[Scored]
    out: BoundedQueue[Record]
    clock: FakeClock
    url: str


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock()
    cfg = OpcUaServerConfig(
        enabled=True,
        port=free_port(),
        namespace_uri=NS,
        security_modes=["None"],
        allow_anonymous=True,
        anonymous_role="operator",
        stale_after_s=2.0,
        feature_ranges={"velocity_rms": (0.0, 50.0)},
    )
    layout = layout_from_config(ASSETS, CHANNELS, DspConfig(window=1024, hop=512))
    server = GatewayOpcUaServer(cfg, layout, clock, tmp_path)
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 1000)
    out: BoundedQueue[Record] = BoundedQueue("records", 1000)
    stage = AlertStage(ALERTS, ASSETS, inp, out, clock)
    stage.publishers.append(server)
    server.acknowledger = stage
    async with asyncio.timeout(GUARD_S):
        await server.start()
    task = asyncio.create_task(stage.run())
    yield Rig(server, stage, inp, out, clock, server.url)
    await inp.close()
    await task
    await server.stop()


@contextlib.asynccontextmanager
async def client_of(url: str) -> AsyncIterator[Client]:
    client = Client(url)
    async with asyncio.timeout(GUARD_S):
        await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()


def vib_frame(clock: FakeClock, names: tuple[str, ...], velocity: float) -> FeatureFrame:
    t = clock.now_ns()
    values = np.zeros(len(names))
    values[names.index("velocity_rms")] = velocity
    return FeatureFrame(
        "m1", "m1_vib", t - 200_000_000, t, t, "s", names, ("",) * len(names), values
    )


class Changes:
    """A subscription handler that records (node, value, receive time) and signals each."""

    def __init__(self) -> None:
        self.seen: list[tuple[ua.NodeId, Any, float]] = []
        self.events: list[Any] = []
        self.changed = asyncio.Event()

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.seen.append((node.nodeid, val, time.perf_counter()))
        self.changed.set()

    def event_notification(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()


async def wait_for(changes: Changes, pred: Any) -> None:
    async with asyncio.timeout(GUARD_S):
        while not pred():
            changes.changed.clear()
            await changes.changed.wait()


async def test_browse_read_analog_items(rig: Rig) -> None:
    async with client_of(rig.url) as client:
        idx = await client.get_namespace_index(NS)
        assets = await client.nodes.objects.get_child(f"{idx}:Assets")
        names = {(await n.read_browse_name()).Name for n in await assets.get_children()}
        assert {"m1", "m2", "Acknowledge", "PromoteModel", "RollbackModel"} <= names
        m1 = await assets.get_child(f"{idx}:m1")
        tags = {(await n.read_browse_name()).Name for n in await m1.get_children()}
        assert {
            "AnomalyScore",
            "HealthState",
            "Severity",
            "ActiveAlerts",
            "ModelVersion",
            "LastUpdate",
            "Channels",
            "Features",
        } <= tags
        vel = await m1.get_child([f"{idx}:Features", f"{idx}:m1_vib", f"{idx}:velocity_rms"])
        assert (await vel.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogItemType)
        rng = await (await vel.get_child("0:EURange")).read_value()
        assert (rng.Low, rng.High) == (0.0, 50.0)
        eu = await (await vel.get_child("0:EngineeringUnits")).read_value()
        assert eu.DisplayName.Text == "mm/s"
        assert eu.UnitId == unece_unit_id("mm/s") == (ord("C") << 16) | (ord("1") << 8) | ord("6")
        temp = await m1.get_child([f"{idx}:Features", f"{idx}:m1_temp", f"{idx}:value"])
        eu = await (await temp.get_child("0:EngineeringUnits")).read_value()
        assert eu.DisplayName.Text == "degC"
        # nothing received yet: Bad, HealthState Unknown
        dv = await vel.read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.is_bad()
        assert await (await m1.get_child(f"{idx}:HealthState")).read_value() == 0


async def test_score_reaches_subscriber_and_alert_is_an_event(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    server = rig.server
    async with client_of(rig.url) as client:
        score_node = client.get_node(server.node_id("Assets.m1.AnomalyScore"))
        health_node = client.get_node(server.node_id("Assets.m1.HealthState"))
        handler = Changes()
        sub = await client.create_subscription(10, handler)
        await sub.subscribe_data_change([score_node, health_node])
        etype = await client.nodes.root.get_child(
            ["0:Types", "0:EventTypes", "0:BaseEventType", f"{server.ns}:AlertEventType"]
        )
        await sub.subscribe_events(client.nodes.server, etype)
        await wait_for(handler, lambda: len(handler.seen) >= 2)  # initial values

        latencies = []
        for i in range(20):
            value = 0.1 + i * 0.001
            t0 = time.perf_counter()
            await rig.inp.put(Score("m1", rig.clock.now_ns(), "iforest", "4", value, 0.8))
            await wait_for(handler, lambda v=value: any(s[1] == v for s in handler.seen))
            t1 = next(s[2] for s in handler.seen if s[1] == value)
            latencies.append(t1 - t0)
        latencies.sort()
        with capsys.disabled():
            print(
                f"\nscore-to-subscriber latency: p50 {latencies[10] * 1e3:.1f} ms, "
                f"max {latencies[-1] * 1e3:.1f} ms (subscription publishing interval 10 ms)"
            )
        assert latencies[10] < 0.5  # goal 100 ms (printed above); a generous bound for CI
        assert await client.get_node(server.node_id("Assets.m1.ModelVersion")).read_value() == (
            "iforest 4"
        )

        await rig.inp.put(Score("m1", rig.clock.now_ns(), "iforest", "4", 0.95, 0.8))
        await wait_for(handler, lambda: len(handler.events) >= 1)
        ev = handler.events[0]
        assert ev.AlertState == "raised"
        assert ev.Rule == "anomaly"
        assert ev.Severity == 700
        alert_id = ev.AlertId
        await wait_for(handler, lambda: any(s[1] == 4 for s in handler.seen))  # HealthState Alarm
        ids = client.get_node(server.node_id("Assets.m1.ActiveAlertIds"))
        assert await ids.read_value() == [alert_id]
        assert await client.get_node(server.node_id("Assets.m1.Severity")).read_value() == 3

        assets = client.get_node(server.node_id("Assets"))
        with pytest.raises(ua.uaerrors.BadNotFound):
            await assets.call_method(f"{server.ns}:Acknowledge", "no-such-alert")
        await assets.call_method(f"{server.ns}:Acknowledge", alert_id)
        await wait_for(handler, lambda: len(handler.events) >= 2)
        assert handler.events[1].AlertState == "acknowledged"
        # no model registry is bound: promote and rollback answer Bad
        with pytest.raises(ua.uaerrors.BadNotImplemented):
            await assets.call_method(f"{server.ns}:PromoteModel", "m1", "5")
        with pytest.raises(ua.uaerrors.BadNotImplemented):
            await assets.call_method(f"{server.ns}:RollbackModel", "m1")
        await sub.delete()


async def test_stale_channel_turns_bad_within_one_period(rig: Rig) -> None:
    server = rig.server
    names = next(c for c in server.layout[0].channels if c.name == "m1_vib").features
    fnames = tuple(n for n, _ in names)
    period = server.cfg.stale_after_s / 10  # the staleness check period
    async with client_of(rig.url) as client:
        vel = client.get_node(server.node_id("Assets.m1.Features.m1_vib.velocity_rms"))
        status = client.get_node(server.node_id("Assets.m1.Channels.m1_vib.Status"))
        await rig.inp.put(vib_frame(rig.clock, fnames, 3.0))
        await rig.out.get()  # forwarded after it was published
        last = rig.clock.monotonic()  # the source stops here
        dv = await vel.read_data_value()
        assert (dv.Value.Value, dv.StatusCode.is_good()) == (3.0, True)
        assert await status.read_value() == "Good"
        bad_after = None
        while bad_after is None:
            await rig.clock.wait_for_sleepers(2)  # the staleness check and the alert ticker
            server.checked.clear()
            rig.clock.advance(period)
            await server.checked.wait()
            dv = await vel.read_data_value(raise_on_bad_status=False)
            if dv.StatusCode.is_bad():
                bad_after = rig.clock.monotonic() - last
            assert rig.clock.monotonic() - last < 2 * server.cfg.stale_after_s  # hang guard
        # Bad no earlier than stale_after_s and within one check period after it
        assert server.cfg.stale_after_s - 1e-6 <= bad_after <= server.cfg.stale_after_s + period
        assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
        assert await status.read_value() == "Stale"
        score = await client.get_node(server.node_id("Assets.m1.AnomalyScore")).read_data_value(
            raise_on_bad_status=False
        )
        assert score.StatusCode.is_bad()  # (no score ever arrived)

        # data again: Good; an Uncertain window: Uncertain
        await rig.inp.put(vib_frame(rig.clock, fnames, 4.0))
        await rig.out.get()
        dv = await vel.read_data_value()
        assert (dv.Value.Value, dv.StatusCode.is_good()) == (4.0, True)
        unc = vib_frame(rig.clock, fnames, 4.5)
        await rig.inp.put(
            FeatureFrame(
                unc.asset,
                unc.channel,
                unc.start_ts_ns,
                unc.end_ts_ns,
                unc.gateway_ts_ns,
                unc.schema_version,
                unc.names,
                unc.units,
                unc.values,
                Quality.UNCERTAIN,
            )
        )
        await rig.out.get()
        dv = await vel.read_data_value(raise_on_bad_status=False)
        assert dv.Value.Value == 4.5
        assert dv.StatusCode.is_uncertain()
        assert await status.read_value() == "Uncertain"


async def test_source_down_turns_channel_bad_at_the_next_check(rig: Rig) -> None:
    server = rig.server
    up = {"m1_temp": True}
    server.sources = lambda: dict(up)
    t = rig.clock.now_ns()
    await rig.inp.put(
        FeatureFrame(
            "m1",
            "m1_temp",
            t,
            t,
            t,
            "s",
            ("value", "rate_per_min"),
            ("degC",) * 2,
            np.array([41.0, 0.0]),
        )
    )
    await rig.out.get()
    async with client_of(rig.url) as client:
        value = client.get_node(server.node_id("Assets.m1.Features.m1_temp.value"))
        status = client.get_node(server.node_id("Assets.m1.Channels.m1_temp.Status"))
        assert await value.read_value() == 41.0
        up["m1_temp"] = False  # the collector lost its device
        await rig.clock.wait_for_sleepers(2)
        server.checked.clear()
        rig.clock.advance(server.cfg.stale_after_s / 10)  # one check period, far from stale
        await server.checked.wait()
        dv = await value.read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.value == ua.StatusCodes.BadNotConnected
        assert await status.read_value() == "SourceDown"
        # m2 is unaffected: it never had data
        other = client.get_node(server.node_id("Assets.m2.Channels.m2_temp.Status"))
        assert await other.read_value() == "NoData"


async def test_alerts_restored_at_start_show_before_any_data(rig: Rig) -> None:
    """A restarted gateway carries on with the alerts of its previous run: SCADA sees them at
    once, even while the asset sends nothing (its device still down)."""
    restored = rig.stage.engine.restore(
        {
            "anomaly": {
                "alert_id": "anomaly@1",
                "raised_ns": 1,
                "severity": 3,
                "acknowledged_ns": None,
                "acknowledged_by": "",
                "model": ["iforest", "7"],
                "detail": "score 0.9",
            }
        }
    )
    assert restored == ["anomaly"]
    await rig.server.show_alerts(rig.stage.engine)
    async with client_of(rig.url) as client:

        async def tag(name: str) -> Any:
            return await client.get_node(rig.server.node_id(f"Assets.m1.{name}")).read_value()

        assert await tag("ActiveAlerts") == 1
        assert await tag("ActiveAlertIds") == ["anomaly@1"]
        assert await tag("Severity") == 3
        assert await tag("HealthState") == 4  # 1 + the machine alert's severity
        m2 = rig.server.node_id("Assets.m2.ActiveAlerts")
        assert await client.get_node(m2).read_value() == 0
