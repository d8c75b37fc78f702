"""Shared fixtures: free loopback ports, simulated machines on a real Modbus server, configs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.demo import free_port
from simulators.machine import Machine, MachineSpec
from simulators.modbus_server import (
    COUNTER_ADDR,
    RING_ADDR,
    RING_LENGTH,
    TEMPERATURE_ADDR,
    VIB_SCALE,
    MachineModbusServer,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "deploy" / "examples" / "gateway.toml"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def modbus_sim(port: int) -> AsyncIterator[MachineModbusServer]:
    """Two machines (a healthy one and one with imbalance) on a real pymodbus server."""
    server = MachineModbusServer(
        [
            Machine(MachineSpec(seed=1)),
            Machine(MachineSpec(seed=2, fault="imbalance", fault_max=0.5, growth_s=1.0)),
        ],
        port=port,
    )
    await server.start()
    yield server
    await server.stop()


def plant_toml(
    port: int,
    state_dir: Path,
    *,
    units: int = 2,
    extra: str = "",
    window: int = 1024,
    hop: int = 512,
) -> str:
    """A config reading ``units`` simulated machines from the server on ``port``."""
    parts = [
        f'[gateway]\nstate_dir = "{state_dir.as_posix()}"\n',
        f"[dsp]\nwindow = {window}\nhop = {hop}\n",
        "[store]\nflush_interval_s = 0.1\n",
        "[runtime]\nshutdown_deadline_s = 10\nrestart = { initial_s = 0.05, max_s = 0.5 }\n",
    ]
    for u in range(1, units + 1):
        parts.append(f"""
[channels.m{u}_vib]
kind = "vibration"
sample_rate_hz = 5120
[channels.m{u}_temp]
kind = "temperature"
[assets.m{u}]
channels = ["m{u}_vib", "m{u}_temp"]
[devices.modbus.m{u}]
host = "127.0.0.1"
port = {port}
unit_id = {u}
timeout_s = 1.0
reconnect = {{ initial_s = 0.05, max_s = 0.2 }}
poll_groups = {{ default = {{ period_s = 0.2 }} }}
[[devices.modbus.m{u}.tags]]
channel = "m{u}_temp"
function = 4
address = {TEMPERATURE_ADDR}
type = "float32"
[[devices.modbus.m{u}.waveforms]]
channel = "m{u}_vib"
ring_address = {RING_ADDR}
ring_length = {RING_LENGTH}
sequence_address = {COUNTER_ADDR}
scale = {VIB_SCALE}
period_s = 0.1
""")
    return "\n".join(parts) + extra


async def wait_until(
    predicate: Callable[[], bool], event: asyncio.Event, limit_s: float = 30.0
) -> None:
    """Wait until ``predicate()`` holds, re-checking each time ``event`` fires (a hang guard of
    ``limit_s``, not a timing assertion)."""
    async with asyncio.timeout(limit_s):
        while not predicate():
            event.clear()
            await event.wait()

