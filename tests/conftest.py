"""Shared fixtures: free loopback ports, simulated machines on a real Modbus server, configs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.demo import free_port
from simulators import modbus_map as M
from simulators.machine import Fault, Machine, MachineSpec
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "deploy" / "examples" / "gateway.toml"


@pytest.fixture
def port() -> int:
    return free_port()


def small_spec(name: str, **kw: object) -> MachineSpec:
    """A machine cheap enough for many tests: one 5.12 kHz vibration channel, no microphone."""
    base: dict[str, object] = {
        "vibration_channels": 1,
        "vibration_rate_hz": 5120.0,
        "acoustic_rate_hz": 0.0,
    }
    return MachineSpec(name=name, **{**base, **kw})  # type: ignore[arg-type]


class Sim:
    """Machines on a real Modbus TCP server, advanced by a running ``Plant``."""

    def __init__(self, machines: list[Machine], port: int) -> None:
        self.machines = machines
        self.server = MachineModbusServer(machines, port=port)
        self.plant = Plant(machines)
        self.plant.publishers.append(self.server)

    async def start(self) -> None:
        await self.server.start()
        self.plant.start()

    async def stop(self) -> None:
        await self.plant.stop()
        await self.server.stop()


@pytest.fixture
async def modbus_sim(port: int) -> AsyncIterator[Sim]:
    """Two machines (a healthy one and one whose imbalance grows within a second)."""
    sim = Sim(
        [
            Machine(small_spec("m1"), seed=1),
            Machine(small_spec("m2", faults=(Fault("imbalance", 0.0, 1.0, 0.5, 1.0),)), seed=2),
        ],
        port,
    )
    await sim.start()
    yield sim
    await sim.stop()


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
        "[runtime]\nshutdown_deadline_s = 10\nrestart = { initial_s = 0.05, max_s = 0.5 }\n"
        "http = { port = 0 }\n",
    ]
    for u in range(1, units + 1):
        parts.append(
            f"""
[channels.m{u}_vib]
kind = "vibration"
sample_rate_hz = 5120
[channels.m{u}_temp]
kind = "temperature"
[assets.m{u}]
channels = ["m{u}_vib", "m{u}_temp"]
"""
            + M.device_toml(
                f"m{u}",
                port,
                u,
                f"m{u}_vib",
                f"m{u}_temp",
                period_s=0.1,
                settings=(
                    "timeout_s = 1.0\nreconnect = { initial_s = 0.05, max_s = 0.2 }\n"
                    "poll_groups = { default = { period_s = 0.2 } }"
                ),
            )
        )
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
