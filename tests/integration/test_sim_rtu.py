"""The Modbus simulator over RTU: a real pymodbus serial server and real serial clients (pymodbus,
then the gateway's own collector), joined by a software null-modem (``PtyLink``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice, ModbusTag, PollGroup
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.core.configbase import Backoff
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.runtime.queues import BoundedQueue
from simulators import modbus_map as M
from simulators.machine import ChannelBlock, Machine, MachineSnapshot, MachineSpec
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant
from simulators.serial_link import PtyLink

BAUD = 19200
RATE_HZ = 256.0  # one vibration channel at a rate a serial bus can carry
SCALE = M.SCALES["vibration"]
_F32 = AsyncModbusSerialClient.DATATYPE.FLOAT32


def _spec(name: str, ambient_c: float) -> MachineSpec:
    return MachineSpec(
        name=name,
        vibration_channels=1,
        vibration_rate_hz=RATE_HZ,
        acoustic_rate_hz=0,
        ambient_c=ambient_c,
    )


class Recorder:
    """A publisher keeping every waveform block the plant generated, per machine."""

    def __init__(self, machines: int) -> None:
        self.blocks: list[list[ChannelBlock]] = [[] for _ in range(machines)]

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        self.blocks[index].append(snap.blocks[0])

    def stream(self, index: int) -> np.ndarray:
        """Every sample of vib0 of machine ``index`` so far, stream index = array index."""
        blocks = self.blocks[index]
        for prev, nxt in itertools.pairwise(blocks):
            assert nxt.first_index == prev.first_index + prev.samples.shape[0]
        return np.concatenate([b.samples for b in blocks])


@pytest.fixture
async def link() -> AsyncIterator[PtyLink]:
    async with PtyLink() as lk:
        yield lk


@pytest.fixture
def plant() -> Plant:
    # different ambient temperatures, so units 1 and 2 serve different values
    return Plant([Machine(_spec("m1", 20.0), seed=1), Machine(_spec("m2", 30.0), seed=2)])


@pytest.fixture
async def server(link: PtyLink, plant: Plant) -> AsyncIterator[MachineModbusServer]:
    srv = MachineModbusServer(plant.machines, serial_port=link.a_path, baudrate=BAUD)
    await srv.start()
    plant.publishers.append(srv)
    yield srv
    await plant.stop()
    await srv.stop()


@pytest.fixture
async def client(
    link: PtyLink, server: MachineModbusServer
) -> AsyncIterator[AsyncModbusSerialClient]:
    c = AsyncModbusSerialClient(link.b_path, baudrate=BAUD, timeout=0.5, retries=0)
    assert await c.connect(), f"cannot open {link.b_path}"
    yield c
    c.close()


async def test_pymodbus_client_reads_scalars_of_each_unit(
    link: PtyLink, plant: Plant, server: MachineModbusServer, client: AsyncModbusSerialClient
) -> None:
    async with asyncio.timeout(30):
        await plant.step()
        for unit in (1, 2):
            snap = plant.last[unit - 1]
            assert snap is not None
            rr = await client.read_holding_registers(0, count=16, device_id=unit)
            assert not rr.isError(), rr
            regs = rr.registers
            temp = client.convert_from_registers(regs[2:4], _F32)
            assert temp == pytest.approx(snap.temperature_c, abs=1e-4)
            assert client.convert_from_registers(regs[4:6], _F32) == pytest.approx(snap.shaft_hz)
            assert regs[8] == round(snap.temperature_c * 10)
            assert regs[14:16] == [1, M.RING_LENGTH]
    temps = [s.temperature_c for s in plant.last if s is not None]
    assert len(set(temps)) == 2  # the two units were told apart
    assert link.a_to_b > 0
    assert link.b_to_a > 0
    assert link.dropped == 0


async def test_gateway_collector_reads_waveform_over_rtu(
    link: PtyLink, plant: Plant, server: MachineModbusServer
) -> None:
    rec = Recorder(len(plant.machines))
    plant.publishers.append(rec)
    cfg = ModbusDevice(
        transport="rtu",
        serial_port=link.b_path,
        baudrate=BAUD,
        parity="N",
        unit_id=1,
        timeout_s=1.0,
        reconnect=Backoff(initial_s=0.05, max_s=0.2),
        poll_groups={"default": PollGroup(period_s=0.1)},
        tags=[ModbusTag(channel="temp", function=3, address=2, type="float32")],
        waveforms=[M.ring_waveform("vib", period_s=0.1)],
    )
    channels = {
        "vib": Channel(kind="vibration", sample_rate_hz=RATE_HZ),
        "temp": Channel(kind="temperature"),
    }
    queue: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10_000)
    collector = ModbusCollector("m1", cfg, channels, queue, SystemClock())
    blocks: list[SampleBlock] = []
    readings: list[Reading] = []
    arrived = asyncio.Event()

    async def consume() -> None:
        while True:
            item = await queue.get()
            if isinstance(item, SampleBlock):
                blocks.append(item)
            else:
                readings.append(item)
            arrived.set()

    def enough() -> bool:  # 1 s of signal in several blocks, and a temperature
        samples = sum(b.samples.shape[0] for b in blocks)
        return len(blocks) >= 4 and samples >= RATE_HZ and bool(readings)

    plant.start()
    tasks = [asyncio.create_task(collector.run()), asyncio.create_task(consume())]
    try:
        async with asyncio.timeout(30):
            while not enough():
                arrived.clear()
                await arrived.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await plant.stop()

    assert collector.counters.connects == 1
    assert collector.counters.transient_errors == 0
    assert collector.counters.samples_lost == 0
    # contiguous from the stream's first sample
    assert blocks[0].sequence == 0
    for prev, nxt in itertools.pairwise(blocks):
        assert nxt.sequence == prev.next_sequence
        assert nxt.sample_rate_hz == RATE_HZ
    got = np.concatenate([b.samples for b in blocks])
    expected = rec.stream(0)[: got.shape[0]]
    assert expected.shape == got.shape
    # the same int16 codes the server wrote, hence equal within the quantisation step
    np.testing.assert_array_equal(
        np.rint(got / SCALE).astype(np.int16), M.to_ring(expected, SCALE).view(np.int16)
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=SCALE / 2 + 1e-6)
    assert float(np.std(got)) > 10 * SCALE  # a real signal, not a ring of zeros
    temps = [r for r in readings if r.channel == "temp"]
    assert temps
    assert all(r.quality == Quality.GOOD for r in temps)
    last = plant.last[0]
    assert last is not None
    assert temps[-1].value == pytest.approx(last.temperature_c, abs=1e-3)


async def _read_fails(client: AsyncModbusSerialClient) -> bool:
    try:
        rr = await client.read_holding_registers(0, count=16, device_id=1)
    except ModbusException:
        return True
    return bool(rr.isError())


async def test_corrupt_frames_fail_crc_then_recover(
    link: PtyLink, plant: Plant, server: MachineModbusServer, client: AsyncModbusSerialClient
) -> None:
    async with asyncio.timeout(30):
        await plant.step()
        assert not await _read_fails(client)
        server.inject("corrupt_frames")
        requests, returned = server.requests, link.a_to_b
        assert await _read_fails(client)
        # the server did answer, and the answer crossed the line: only its CRC was wrong
        assert server.requests == requests + 1
        assert link.a_to_b > returned
        server.clear("corrupt_frames")
        assert not await _read_fails(client)
        assert not await _read_fails(client)


async def test_two_devices_share_one_serial_bus(
    link: PtyLink, plant: Plant, server: MachineModbusServer
) -> None:
    """Units 1 and 2 on the same port: one shared client and lock, both collected."""
    queue: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10_000)
    channels = {f"t{u}": Channel(kind="temperature") for u in (1, 2)}
    collectors = [
        ModbusCollector(
            f"m{u}",
            ModbusDevice(
                transport="rtu",
                serial_port=link.b_path,
                baudrate=BAUD,
                parity="N",
                unit_id=u,
                timeout_s=1.0,
                poll_groups={"default": PollGroup(period_s=0.05)},
                tags=[ModbusTag(channel=f"t{u}", function=3, address=2, type="float32")],
            ),
            channels,
            queue,
            SystemClock(),
        )
        for u in (1, 2)
    ]
    await plant.step()
    tasks = [asyncio.create_task(c.run()) for c in collectors]
    seen: dict[str, float] = {}
    try:
        async with asyncio.timeout(30):
            while len(seen) < 2:
                r = await queue.get()
                assert isinstance(r, Reading)
                seen[r.channel] = r.value
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [c.state for c in collectors] == ["connected", "connected"]
    assert [c.counters.failed_connects for c in collectors] == [0, 0]
    last = [s.temperature_c for s in plant.last if s is not None]
    assert seen == {"t1": pytest.approx(last[0], abs=1e-3), "t2": pytest.approx(last[1], abs=1e-3)}


@pytest.mark.parametrize("fault", ["no_response", "corrupt_frames"])
async def test_collector_survives_a_silent_or_garbling_slave(
    link: PtyLink, plant: Plant, server: MachineModbusServer, fault: str
) -> None:
    """A slave that stops answering, or whose frames fail the CRC: the collector marks the
    device unreachable, and recovers by itself once the slave behaves again."""
    queue: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10_000)
    cfg = ModbusDevice(
        transport="rtu",
        serial_port=link.b_path,
        baudrate=BAUD,
        parity="N",
        unit_id=1,
        timeout_s=0.3,
        reconnect=Backoff(initial_s=0.05, max_s=0.2),
        poll_groups={"default": PollGroup(period_s=0.05)},
        tags=[ModbusTag(channel="t", function=3, address=2, type="float32")],
    )
    col = ModbusCollector("m1", cfg, {"t": Channel(kind="temperature")}, queue, SystemClock())
    await plant.step()
    task = asyncio.create_task(col.run())
    try:
        async with asyncio.timeout(30):
            await col.wait_state("connected")
            server.inject(fault)
            await col.wait_state("unreachable")
            server.clear(fault)
            await col.wait_state("connected")
            while True:  # fresh good readings flow again
                r = await queue.get()
                if isinstance(r, Reading) and r.quality == Quality.GOOD:
                    break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert col.counters.disconnects >= 1
    assert col.counters.connects >= 2
