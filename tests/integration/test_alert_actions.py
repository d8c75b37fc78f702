"""Alert actions write a coil on the simulator's real Modbus server: exactly once per
transition, not again after a restart, rate-limited, failures audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from pymodbus.client import AsyncModbusTcpClient

from gateway.alerts.actions import ActionRunner
from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import AlertEngine
from gateway.config.plant import Asset
from gateway.core.clock import FakeClock
from gateway.core.records import ActionRecord, AlertEvent, AlertState, Score, Severity
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue
from gateway.store.codec import record_row
from gateway.store.journal import Journal
from simulators.machine import Machine
from simulators.modbus_server import MachineModbusServer
from tests.conftest import small_spec

COIL = 100
WRITE_COIL = 5


class RecordingServer(MachineModbusServer):
    """The simulator's Modbus server, noting every coil write it answers (pymodbus calls the
    action hook for the write and again for the read-back that builds the response)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.writes: list[tuple[int, int]] = []

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> Any:
        if function_code == WRITE_COIL and set_values is not None:  # (not the read-back)
            self.writes.append((function_code, address))
        return await super()._action(
            unit, function_code, start_address, address, count, registers, set_values
        )


@pytest.fixture
async def plc(port: int) -> AsyncIterator[RecordingServer]:
    server = RecordingServer([Machine(small_spec("m1"), seed=1)], port=port)
    await server.start()
    yield server
    await server.stop()


def alerts_cfg(port: int, min_interval_s: float = 0.0) -> AlertsConfig:
    return AlertsConfig.model_validate(
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
                    "action": {
                        "min_interval_s": min_interval_s,
                        "target": {
                            "host": "127.0.0.1",
                            "port": port,
                            "device_id": 1,
                            "table": "coil",
                            "address": COIL,
                            "on_raise": 1,
                            "on_clear": 0,
                        },
                    },
                }
            }
        }
    )


class Rig:
    def __init__(self, cfg: AlertsConfig, state: Path, clock: FakeClock) -> None:
        self.engine = AlertEngine(cfg, {"m1": Asset(channels=["m1_vib"])})
        self.out: BoundedQueue[ActionRecord] = BoundedQueue("records", 100)
        self.runner = ActionRunner(dict(cfg.rules), state, self.out, clock, attempts=2)
        self.clock = clock
        self.task = asyncio.create_task(self.runner.run())

    async def score(self, value: float) -> list[AlertEvent]:
        events = self.engine.on_score(Score("m1", self.clock.now_ns(), "m", "1", value, 0.8))
        await self.runner.on_events(events)
        return events

    async def close(self) -> None:
        await self.runner.inp.close()
        await self.task


async def coil(port: int) -> bool:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
    await client.connect()
    try:
        r = await client.read_coils(COIL, count=1, device_id=1)
        return bool(r.bits[0])
    finally:
        client.close()


async def test_coil_written_exactly_once_per_transition_and_not_after_restart(
    plc: RecordingServer, port: int, tmp_path: Path
) -> None:
    state = tmp_path / "alert-actions.json"
    clock = FakeClock()
    rig = Rig(alerts_cfg(port), state, clock)
    for v in (0.9, 0.95, 0.7, 0.3, 0.2, 0.85, 0.9):  # raise, (held), clear, raise
        await rig.score(v)
    audits = [await rig.out.get() for _ in range(3)]
    assert [(a.transition, a.outcome, a.value) for a in audits] == [
        (AlertState.RAISED, "written", 1),
        (AlertState.CLEARED, "written", 0),
        (AlertState.RAISED, "written", 1),
    ]
    assert plc.writes == [(WRITE_COIL, COIL)] * 3
    assert await coil(port) is True
    await rig.close()

    # a restart: the condition is still there, so the new engine raises a new alert; the coil
    # already holds 1 (the state file says so), so it is not written again
    rig = Rig(alerts_cfg(port), state, clock)
    [raised] = await rig.score(0.9)
    skipped = await rig.out.get()
    assert (skipped.alert_id, skipped.outcome) == (raised.alert_id, "skipped")
    await rig.score(0.1)
    cleared = await rig.out.get()
    assert (cleared.transition, cleared.outcome) == (AlertState.CLEARED, "written")
    assert plc.writes == [(WRITE_COIL, COIL)] * 4
    assert await coil(port) is False
    assert rig.runner.counts == {"written": 1, "skipped": 1, "failed": 0}
    await rig.close()

    # the audit records are journal rows
    j = Journal(tmp_path / "j.sqlite")
    try:
        j.append([record_row(skipped), record_row(cleared)])
        rows = j.read("check", 10)
        assert [(r.kind, r.payload["outcome"]) for r in rows] == [
            ("action", "skipped"),
            ("action", "written"),
        ]
        assert rows[1].payload["target"] == f"modbus://127.0.0.1:{port}/1/coil/{COIL}"
    finally:
        j.close()


async def test_outputs_are_reconciled_at_start_with_the_restored_alerts(
    plc: RecordingServer, port: int, tmp_path: Path
) -> None:
    """The gateway stopped while a transition's write waited for its turn: at the next start
    the output is made to agree with the alert as restored (cleared: on_clear; still active:
    on_raise); an output that already agrees is not written."""
    state = tmp_path / "alert-actions.json"
    cfg = alerts_cfg(port)
    clock = FakeClock()
    rig = Rig(cfg, state, clock)
    await rig.score(0.9)  # raised: the coil is set
    assert (await rig.out.get()).outcome == "written"
    await rig.close()  # ...the clear that follows never gets written: the gateway stops
    assert await coil(port) is True

    async def restart(active: dict[str, tuple[str, Severity]]) -> list[ActionRecord]:
        out: BoundedQueue[ActionRecord] = BoundedQueue("records", 100)
        runner = ActionRunner(dict(cfg.rules), state, out, clock, attempts=2)
        due = runner.reconcile(active)
        task = asyncio.create_task(runner.run())
        audits = [await out.get() for _ in range(due)]
        await runner.inp.close()
        await task
        return audits

    # restored with no active alert (it was cleared before the stop): the coil is cleared
    [cleared] = await restart({})
    assert (cleared.transition, cleared.outcome) == (AlertState.CLEARED, "written")
    assert cleared.value == 0
    assert await coil(port) is False
    # restored with an active alert whose raise was never written: the coil is set
    [raised] = await restart({"anomaly": ("anomaly@5", Severity.ALARM)})
    assert (raised.alert_id, raised.transition, raised.value) == ("anomaly@5", AlertState.RAISED, 1)
    assert await coil(port) is True
    writes = len(plc.writes)
    assert await restart({"anomaly": ("anomaly@5", Severity.ALARM)}) == []  # agrees: no write
    assert len(plc.writes) == writes


async def test_writes_are_rate_limited_not_dropped(
    plc: RecordingServer, port: int, tmp_path: Path
) -> None:
    clock = FakeClock()
    rig = Rig(alerts_cfg(port, min_interval_s=5.0), tmp_path / "s.json", clock)
    await rig.score(0.9)
    await rig.score(0.1)  # cleared at once: its write must wait 5 s
    assert (await rig.out.get()).outcome == "written"
    await clock.wait_for_sleepers(1)
    assert plc.writes == [(WRITE_COIL, COIL)]
    clock.advance(4.9)
    assert clock.pending_sleepers == 1
    clock.advance(0.1)
    assert (await rig.out.get()).transition == AlertState.CLEARED
    assert plc.writes == [(WRITE_COIL, COIL)] * 2
    await rig.close()


async def test_unreachable_device_is_retried_then_audited_failed(tmp_path: Path) -> None:
    clock = FakeClock(auto_advance=True)
    rig = Rig(alerts_cfg(free_port()), tmp_path / "s.json", clock)
    await rig.score(0.9)
    audit = await rig.out.get()
    assert audit.outcome == "failed"
    assert "unreachable" in audit.detail
    assert clock.sleeps == [0.5]  # one retry after the backoff
    assert not (tmp_path / "s.json").exists()  # nothing written, nothing remembered
    await rig.close()


async def test_opcua_variable_written_once_per_transition(tmp_path: Path) -> None:
    from asyncua import Server
    from asyncua.common.callback import CallbackType

    url = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:test:plc")
    beacon = await server.nodes.objects.add_variable(
        ua.NodeId("Line1.Beacon", ns), f"{ns}:Beacon", False, ua.VariantType.Boolean
    )
    await beacon.set_writable()
    writes: list[bool] = []

    async def on_write(event: Any, dispatcher: Any) -> None:
        for w in event.request_params.NodesToWrite:  # (clients' writes of the beacon only)
            if event.is_external and w.NodeId == beacon.nodeid:
                writes.append(bool(w.Value.Value.Value))

    server.subscribe_server_callback(CallbackType.PreWrite, on_write)
    await server.start()
    try:
        cfg = AlertsConfig.model_validate(
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
                        "action": {
                            "min_interval_s": 0,
                            "target": {
                                "endpoint": url,
                                "node_id": f"ns={ns};s=Line1.Beacon",
                                "data_type": "Boolean",
                            },
                        },
                    }
                }
            }
        )
        rig = Rig(cfg, tmp_path / "s.json", FakeClock())
        for v in (0.9, 0.95, 0.1, 0.2):  # raise, (held), clear
            await rig.score(v)
        audits = [await rig.out.get() for _ in range(2)]
        assert [(a.transition, a.outcome) for a in audits] == [
            (AlertState.RAISED, "written"),
            (AlertState.CLEARED, "written"),
        ]
        assert audits[0].target == f"{url}#ns={ns};s=Line1.Beacon"
        assert writes == [True, False]
        assert await beacon.read_value() is False
        await rig.close()
    finally:
        await server.stop()
