"""The Modbus simulator seen by a pymodbus client: the documented map, the ring, every fault
injection observable, and recovery after each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.collectors.modbus.decode import decode_values, decode_waveform
from gateway.core.clock import FakeClock
from simulators import modbus_map as M
from simulators.machine import Machine, MachineSnapshot
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant
from tests.conftest import small_spec


class Recorder:
    """A publisher that keeps every snapshot, to compare with what clients read."""

    def __init__(self) -> None:
        self.snaps: list[list[MachineSnapshot]] = [[], []]

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        self.snaps[index].append(snap)


@pytest.fixture
async def rig(port: int) -> AsyncIterator[tuple[MachineModbusServer, Plant, Recorder]]:
    machines = [Machine(small_spec("a"), seed=1), Machine(small_spec("b", shaft_hz=30.0), seed=2)]
    server = MachineModbusServer(machines, port=port)
    await server.start()
    clock = FakeClock()
    plant = Plant(machines, clock)
    rec = Recorder()
    plant.publishers += [server, rec]
    await plant.step()
    clock.advance(0.5)  # driven by hand: 0.5 s of samples, deterministic content
    await plant.step()
    yield server, plant, rec
    await server.stop()


async def client(port: int, timeout_s: float = 1.0) -> AsyncModbusTcpClient:
    c = AsyncModbusTcpClient(
        "127.0.0.1", port=port, timeout=timeout_s, retries=0, reconnect_delay=0
    )
    assert await c.connect()
    return c


async def test_register_map_and_ring(
    rig: tuple[MachineModbusServer, Plant, Recorder], port: int
) -> None:
    _, _, rec = rig
    c = await client(port)
    try:
        for unit in (1, 2):
            snap = rec.snaps[unit - 1][-1]
            regs = (await c.read_input_registers(0, count=28, device_id=unit)).registers
            assert decode_values(regs[2:4], "float32")[0] == pytest.approx(
                snap.temperature_c, abs=1e-4
            )
            assert decode_values(regs[4:6], "float32")[0] == pytest.approx(snap.shaft_hz, rel=1e-6)
            assert decode_values(regs[6:8], "float32", "CDAB")[0] == pytest.approx(
                snap.temperature_c, abs=1e-4
            )
            assert decode_values(regs[8:9], "int16")[0] == round(snap.temperature_c * 10)
            assert decode_values(regs[9:10], "int16", "BADC")[0] == round(snap.temperature_c * 10)
            assert regs[14:16] == [1, M.RING_LENGTH]
            counter = int(decode_values(regs[20:22], "uint32")[0])
            blk = snap.blocks[0]
            assert counter == blk.first_index + blk.samples.shape[0]
            assert decode_values(regs[22:26], "float32").tolist() == pytest.approx([0.001, 5120.0])
            # the newest 100 samples in the ring are the machine's samples, quantised to 1 mg
            k0 = counter - 100
            addr = M.ring_address(0) + k0 % M.RING_LENGTH
            ring = (await c.read_holding_registers(addr, count=100, device_id=unit)).registers
            np.testing.assert_allclose(
                decode_waveform(ring, "int16", 0.001), blk.samples[-100:], atol=0.0006
            )
        ident = await c.read_device_information(device_id=1)
        assert b"pdm-gateway simulators" in ident.information.values()
        past = await c.read_input_registers(M.register_count(1), count=1, device_id=1)
        assert past.isError()  # beyond the map: exception response
    finally:
        c.close()


async def test_exception_injection(
    rig: tuple[MachineModbusServer, Plant, Recorder], port: int
) -> None:
    server, _, _ = rig
    c = await client(port)
    try:
        for code, number in (("busy", 6), ("illegal_address", 2)):
            server.inject("exception", code=code)
            rr = await c.read_input_registers(0, count=2, device_id=1)
            assert rr.isError()
            assert rr.exception_code == number
            server.clear("exception")
            assert not (await c.read_input_registers(0, count=2, device_id=1)).isError()
    finally:
        c.close()


async def test_drop_connections(
    rig: tuple[MachineModbusServer, Plant, Recorder], port: int
) -> None:
    server, _, _ = rig
    c = await client(port)
    assert not (await c.read_input_registers(0, count=2, device_id=1)).isError()
    server.inject("drop_connections")
    with pytest.raises(ModbusException):
        await c.read_input_registers(0, count=2, device_id=1)
    c.close()
    c2 = await client(port)  # the server itself is still up
    try:
        assert not (await c2.read_input_registers(0, count=2, device_id=1)).isError()
    finally:
        c2.close()


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("no_response", {}),
        ("latency", {"latency_s": 5.0}),  # far beyond the client's timeout
        ("corrupt_frames", {}),
    ],
)
async def test_silence_latency_and_corruption_fail_reads_then_recover(
    rig: tuple[MachineModbusServer, Plant, Recorder], port: int, kind: str, params: dict[str, float]
) -> None:
    server, _, _ = rig
    server.inject(kind, **params)
    c = await client(port, timeout_s=0.3)
    try:
        failed = False
        try:
            rr = await c.read_input_registers(0, count=2, device_id=1)
            failed = rr.isError()
        except ModbusException:
            failed = True
        assert failed
    finally:
        c.close()
    server.clear(kind)
    c = await client(port)
    try:
        assert not (await c.read_input_registers(0, count=2, device_id=1)).isError()
    finally:
        c.close()
