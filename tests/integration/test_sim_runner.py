"""Scenario runs: scheduled injections on the simulation clock, ground truth, the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.clock import FakeClock
from gateway.demo import free_port
from simulators.runner import Simulation
from simulators.scenario import Scenario, load_scenario


async def settle(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Advance the fake clock in steps, letting due tasks run after each (no real waiting)."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for _ in range(5):  # a few loop turns: woken tasks run and go back to sleep
            await asyncio.sleep(0)


async def test_scheduled_injections_follow_the_simulation_clock(tmp_path: Path) -> None:
    scenario = Scenario.model_validate(
        {
            "injections": [
                {"type": "exception", "at_s": 10, "duration_s": 5, "code": "illegal_address"},
                {"type": "latency", "at_s": 12, "duration_s": 1, "latency_s": 0.2},
            ]
        }
    )
    clock = FakeClock()
    machines = scenario.machines(
        2, seed=3, speed=1.0, vibration_channels=1, vibration_rate_hz=1024.0, acoustic_rate_hz=0.0
    )
    sim = Simulation(
        "custom",
        scenario,
        machines,
        modbus_port=free_port(),
        clock=clock,
        truth_path=tmp_path / "truth.json",
    )
    await sim.start()
    assert sim.modbus is not None
    try:
        await settle(clock, 9.5)
        assert sim.modbus.faults == {}
        await settle(clock, 1.0)  # t = 10.5
        assert sim.modbus.faults == {"exception": {"code": "illegal_address"}}
        await settle(clock, 2.0)  # t = 12.5
        assert set(sim.modbus.faults) == {"exception", "latency"}
        await settle(clock, 3.0)  # t = 15.5
        assert sim.modbus.faults == {}
    finally:
        await sim.stop()
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert [i["type"] for i in truth["injections"]] == ["exception", "latency"]
    assert truth["injections"][0]["at_unix_ns"] == truth["start_unix_ns"] + 10 * 10**9


def test_ground_truth_of_a_run_to_failure_scenario(tmp_path: Path) -> None:
    from simulators.scenario import ground_truth

    sc = load_scenario("outer-race")
    machines = sc.machines(3, seed=1, speed=1000.0)
    truth = ground_truth("outer-race", sc, machines, seed=1, speed=1000.0, start_unix_ns=0)
    fault = truth["machines"][0]["faults"][0]
    assert fault["type"] == "outer_race"
    assert fault["onset_s"] == 5 * 86_400
    assert fault["failure_s"] == 30 * 86_400
    # at 1000x, failure comes 30 days / 1000 = 2592 s of wall time after the start
    assert fault["failure_unix_ns"] == 2_592 * 10**9
    sev = fault["severity"]
    assert sev[0][1] == 0.0
    assert sev[-1][1] == pytest.approx(1.0)
    assert truth["machines"][0]["bearing_orders"]["bpfo"] == pytest.approx(3.585, abs=0.01)


def test_simulate_cli_print_map_and_unknown_scenario() -> None:
    cli = [sys.executable, "-m", "gateway.cli", "simulate"]
    out = subprocess.run([*cli, "--print-map"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "ch0.counter" in out.stdout
    bad = subprocess.run(
        [*cli, "--scenario", "no-such"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "unknown scenario 'no-such'" in bad.stderr
    assert "outer-race" in bad.stderr


async def test_simulate_cli_serves_modbus_and_opcua_together(tmp_path: Path) -> None:
    """``simulate`` with every server: the same machines over Modbus TCP, RTU and OPC UA."""
    import re

    from asyncua import Client
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

    from gateway.collectors.modbus.decode import decode_values

    mb, ua = free_port(), free_port()
    truth = tmp_path / "truth.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "simulate",
        "--scenario",
        "imbalance",
        "--machines",
        "2",
        "--modbus-port",
        str(mb),
        "--opcua-port",
        str(ua),
        "--seed",
        "5",
        "--speed",
        "1000",
        "--truth",
        str(truth),
        "--rtu",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert f"opc.tcp://127.0.0.1:{ua}/pdm-sim/" in line
        c = AsyncModbusTcpClient("127.0.0.1", port=mb)
        await c.connect()
        regs = (await c.read_input_registers(2, count=4, device_id=2)).registers
        c.close()
        temp_mb = decode_values(regs[0:2], "float32")[0]
        assert decode_values(regs[2:4], "float32")[0] == pytest.approx(16.5)  # imbalance.toml
        async with Client(f"opc.tcp://127.0.0.1:{ua}/pdm-sim/") as client:
            ns = await client.get_namespace_index("urn:pdm-gateway:simulator")
            node = await client.nodes.objects.get_child(
                [f"{ns}:Machines", f"{ns}:m2", f"{ns}:Temperature"]
            )
            temp_ua = await node.read_value()
        assert temp_ua == pytest.approx(temp_mb, abs=0.5)
        assert json.loads(truth.read_text())["machines"][1]["faults"][0]["type"] == "imbalance"
        rtu = re.search(r"modbus rtu (\S+) at (\d+) baud", line)
        assert rtu is not None, line
        serial = AsyncModbusSerialClient(rtu.group(1), baudrate=int(rtu.group(2)), timeout=2)
        assert await serial.connect()
        regs = (await serial.read_input_registers(4, count=2, device_id=1)).registers
        serial.close()
        assert decode_values(regs, "float32")[0] == pytest.approx(16.5)
    finally:
        proc.terminate()
        assert await proc.wait() == 0
