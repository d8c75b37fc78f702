"""The Modbus TCP simulator read by an independent client: Debian's ``mbpoll`` CLI (libmodbus).

mbpoll flags used: ``-1`` poll once; ``-0`` PDU (0-based) addresses, as in ``modbus_map``;
``-p`` TCP port; ``-a`` unit id; ``-r``/``-c`` start and count; ``-o`` timeout (s);
``-t 4`` 16-bit holding registers, ``-t 4:float`` / ``-t 4:int`` 32-bit values, whose word
order is little-endian (CDAB) by default and big-endian (ABCD) with ``-B``.
mbpoll is installed by ``tests/setup-system-deps.sh``; without it these tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.core.clock import FakeClock
from gateway.demo import free_port
from simulators import modbus_map as M
from simulators.machine import Machine, MachineSnapshot, MachineSpec
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant

RATE_HZ = 25_600.0
ELAPSED_S = 3.0  # 76800 samples: the counter's high word is non-zero, so word order matters
COUNTER0 = M.channel_entries(0)[0].address
_VALUE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


@dataclass
class Rig:
    server: MachineModbusServer
    plant: Plant

    def snap(self, unit: int) -> MachineSnapshot:
        s = self.plant.last[unit - 1]
        assert s is not None
        return s


@dataclass
class Result:
    returncode: int
    values: dict[int, str]  # register address (0-based) -> value as mbpoll printed it
    stderr: str


def mbpoll_path() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail(
            "mbpoll is not installed: run tests/setup-system-deps.sh (or apt-get install mbpoll)",
            pytrace=False,
        )
    return path


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    def spec(name: str, ambient_c: float, shaft_hz: float) -> MachineSpec:
        return MachineSpec(
            name=name,
            vibration_channels=1,
            vibration_rate_hz=RATE_HZ,
            acoustic_rate_hz=0,
            ambient_c=ambient_c,
            shaft_hz=shaft_hz,
        )

    clock = FakeClock()
    plant = Plant(
        [Machine(spec("m1", 21.37, 24.75), seed=1), Machine(spec("m2", 3.5, 29.5), seed=2)],
        clock=clock,
    )
    server = MachineModbusServer(plant.machines, port=free_port())
    await server.start()
    plant.publishers.append(server)
    plant.elapsed_s()  # t = 0 now
    clock.advance(ELAPSED_S)
    await plant.step()
    yield Rig(server, plant)
    await server.stop()


async def mbpoll(rig: Rig, *args: str, unit: int = 1) -> Result:
    """Run mbpoll once against the simulator; the server keeps serving on this loop meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        mbpoll_path(),
        "-1",
        "-0",
        "-o",
        "2",
        "-p",
        str(rig.server.port),
        "-a",
        str(unit),
        *args,
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    values = {int(a): v for a, v in _VALUE.findall(out.decode())}
    return Result(proc.returncode, values, err.decode())


def _ok(r: Result) -> dict[int, str]:
    assert r.returncode == 0, f"mbpoll failed ({r.returncode}): {r.stderr}"
    return r.values


async def test_float32_abcd_and_cdab(rig: Rig) -> None:
    for unit in (1, 2):
        snap = rig.snap(unit)
        v = _ok(await mbpoll(rig, "-B", "-t", "4:float", "-r", "2", "-c", "2", unit=unit))
        assert float(v[2]) == pytest.approx(snap.temperature_c, abs=1e-3)
        assert float(v[4]) == pytest.approx(snap.shaft_hz, abs=1e-3)
        # the word-swapped copy, read with mbpoll's default (little-endian) word order
        v = _ok(await mbpoll(rig, "-t", "4:float", "-r", "6", unit=unit))
        assert float(v[6]) == pytest.approx(snap.temperature_c, abs=1e-3)
    temps = {round(rig.snap(u).temperature_c, 2) for u in (1, 2)}
    assert temps == {42.37, 24.5}  # ambient + load x rise: the units are told apart


async def test_int16_and_uint32_counters(rig: Rig) -> None:
    snap = rig.snap(1)
    v = _ok(await mbpoll(rig, "-t", "4", "-r", "8", "-c", "1"))
    assert int(v[8]) == round(snap.temperature_c * 10)
    # input registers (function 4) serve the same map
    v = _ok(await mbpoll(rig, "-t", "3", "-r", "14", "-c", "2"))
    assert (int(v[14]), int(v[15])) == (1, M.RING_LENGTH)
    v = _ok(await mbpoll(rig, "-B", "-t", "4:int", "-r", str(COUNTER0)))
    samples = round(ELAPSED_S * RATE_HZ)
    assert samples > 0xFFFF
    assert int(v[COUNTER0]) == samples == snap.blocks[0].first_index + snap.blocks[0].samples.size
    v = _ok(await mbpoll(rig, "-B", "-t", "4:int", "-r", "10"))
    assert int(v[10]) == int(ELAPSED_S)  # uptime, s
    # without -B mbpoll swaps the words: proof the flag (and the map's ABCD) matter
    v = _ok(await mbpoll(rig, "-t", "4:int", "-r", str(COUNTER0)))
    assert int(v[COUNTER0]) != samples


async def test_read_past_the_map_is_an_exception(rig: Rig) -> None:
    end = M.register_count(1)  # one channel: ring 0 is the last block of the map
    _ok(await mbpoll(rig, "-t", "4", "-r", str(end - 2), "-c", "2"))
    for start, count in ((end, 1), (end - 1, 2)):
        r = await mbpoll(rig, "-t", "4", "-r", str(start), "-c", str(count))
        assert r.returncode != 0
        assert "illegal data address" in r.stderr.lower(), r.stderr


async def test_busy_exception_fault_and_recovery(rig: Rig) -> None:
    args = ("-B", "-t", "4:float", "-r", "2")
    _ok(await mbpoll(rig, *args))
    rig.server.inject("exception", code="busy")
    r = await mbpoll(rig, *args)
    assert r.returncode != 0
    assert "busy" in r.stderr.lower(), r.stderr
    assert 2 not in r.values
    rig.server.clear("exception")
    v = _ok(await mbpoll(rig, *args))
    assert float(v[2]) == pytest.approx(rig.snap(1).temperature_c, abs=1e-3)
