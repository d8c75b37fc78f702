"""The collector against the simulator: the scalar map in every order it serves, and waveform
gaps (ring overrun) detected from the sequence counter, counted, and never stitched."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice, ModbusTag, PollGroup
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.dsp.framing import Framer
from gateway.runtime.queues import BoundedQueue
from simulators import modbus_map as M
from simulators.machine import Machine, MachineSnapshot
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant
from tests.conftest import small_spec


class Keep:
    def __init__(self) -> None:
        self.snaps: list[MachineSnapshot] = []

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        self.snaps.append(snap)

    def stream(self) -> np.ndarray:
        return np.concatenate([s.blocks[0].samples for s in self.snaps])


async def rig(port: int) -> tuple[FakeClock, Plant, MachineModbusServer, Keep]:
    clock = FakeClock()
    machine = Machine(small_spec("m1"), seed=3)
    server = MachineModbusServer([machine], port=port)
    await server.start()
    plant = Plant([machine], clock)
    keep = Keep()
    plant.publishers += [server, keep]
    plant.elapsed_s()  # time zero
    return clock, plant, server, keep


async def test_scalar_map_in_every_served_order(port: int) -> None:
    clock, plant, server, _ = await rig(port)
    clock.advance(2.5)
    await plant.step()
    tags = [
        ("t_abcd", 2, "float32", "ABCD", 1.0),
        ("t_cdab", 6, "float32", "CDAB", 1.0),
        ("t10_ab", 8, "int16", "ABCD", 0.1),
        ("t10_ba", 9, "int16", "BADC", 0.1),
        ("up_abcd", 10, "uint32", "ABCD", 1.0),
        ("up_dcba", 12, "uint32", "DCBA", 1.0),
        ("speed", 4, "float32", "ABCD", 1.0),
        ("channels", 14, "uint16", "ABCD", 1.0),
    ]
    cfg = ModbusDevice(
        host="127.0.0.1",
        port=port,
        poll_groups={"default": PollGroup(period_s=1)},
        tags=[
            ModbusTag(channel=c, function=4, address=a, type=t, order=o, scale=s)  # type: ignore[arg-type]
            for c, a, t, o, s in tags
        ],
    )
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 1000)
    col = ModbusCollector("m1", cfg, {c: Channel(kind="temperature") for c, *_ in tags}, q, clock)
    task = asyncio.create_task(col.run())
    got: dict[str, float] = {}
    try:
        async with asyncio.timeout(30):
            while len(got) < len(tags):
                r = await q.get()
                assert isinstance(r, Reading)
                assert r.quality == Quality.GOOD
                got[r.channel] = r.value
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
    snap = plant.last[0]
    assert snap is not None
    assert got["t_abcd"] == pytest.approx(snap.temperature_c, abs=1e-4)
    assert got["t_cdab"] == got["t_abcd"]
    assert got["t10_ab"] == got["t10_ba"] == pytest.approx(round(snap.temperature_c * 10) / 10)
    assert got["up_abcd"] == got["up_dcba"] == 2
    assert got["speed"] == pytest.approx(snap.shaft_hz)
    assert got["channels"] == 1


async def test_ring_overrun_is_a_counted_gap_never_stitched(port: int) -> None:
    clock, plant, server, keep = await rig(port)
    clock.advance(1.0)
    await plant.step()  # 5120 samples in the ring
    cfg = ModbusDevice(
        host="127.0.0.1",
        port=port,
        waveforms=[M.ring_waveform("v", period_s=10.0)],
    )
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 1000)
    col = ModbusCollector(
        "m1", cfg, {"v": Channel(kind="vibration", sample_rate_hz=5120)}, q, clock
    )
    task = asyncio.create_task(col.run())
    try:
        async with asyncio.timeout(30):
            first = await q.get()
            assert isinstance(first, SampleBlock)
            await clock.wait_for_sleepers(1)  # the collector waits for its next period
            for _ in range(10):  # 10 s pass: 51200 new samples into an 8192-sample ring
                clock.advance(1.0)
                await plant.step()
            second = await q.get()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
    assert isinstance(second, SampleBlock)
    assert (first.sequence, first.samples.shape[0]) == (0, 5120)
    end = 5120 + 10 * 5120
    assert second.sequence == end - M.RING_LENGTH  # only what the ring still held
    assert col.counters.overruns == 1
    assert col.counters.samples_lost == second.sequence - first.next_sequence
    stream = keep.stream()
    np.testing.assert_allclose(second.samples, stream[second.sequence : end], atol=0.0006)
    framer = Framer(1024, 512)  # the DSP sees the jump and restarts framing there
    framer.push(first)
    framer.push(second)
    assert framer.gaps == 1
