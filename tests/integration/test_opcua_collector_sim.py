"""The OPC UA collector against the simulator's real asyncua server on a free loopback port.

The plant is stepped by hand on one fake clock (deterministic blocks); the collector runs on
another fake clock, advanced only to end its reconnect backoff. Every wait is on the output
queue or a collector event, with ``asyncio.timeout`` as a hang guard only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.collectors.opcua.config import OpcUaDevice
from gateway.collectors.opcua.convert import datetime_ns
from gateway.config import parse_config
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.demo import free_port
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.queues import BoundedQueue
from simulators.machine import Machine
from simulators.opcua_server import MachineOpcUaServer
from simulators.plant import Plant
from tests.conftest import small_spec

GUARD_S = 60.0
TICK_S = 0.1
FS = 5120.0
NS = "urn:pdm-gateway:simulator"
CHANNELS = {
    "m1_temp": Channel(kind="temperature"),
    "m1_speed": Channel(kind="speed"),
    "m1_vib": Channel(kind="vibration", sample_rate_hz=FS),
}


def device(endpoint: str, **extra: object) -> OpcUaDevice:
    return OpcUaDevice.model_validate(
        {
            "endpoint": endpoint,
            "publishing_interval_ms": 20,
            "sampling_interval_ms": 0,
            "reconnect": {"initial_s": 1.0, "max_s": 5.0},
            "nodes": [
                {
                    "channel": "m1_temp",
                    "namespace_uri": NS,
                    "browse_path": ["Machines", "m1", "Temperature"],
                    "unit": "degC",
                },
                {"channel": "m1_speed", "namespace_uri": NS, "node_id": "s=m1.ShaftSpeed"},
                {
                    "channel": "m1_vib",
                    "namespace_uri": NS,
                    "kind": "waveform",
                    "node_id": "s=m1.vib0.Waveform",
                    "sequence_node_id": "s=m1.vib0.FirstIndex",
                    "sample_rate_hz": FS,
                },
            ],
            **extra,
        }
    )


@dataclass
class Rig:
    server: MachineOpcUaServer
    plant: Plant
    plant_clock: FakeClock
    clock: FakeClock
    out: BoundedQueue[SampleBlock | Reading]
    collector: OpcUaCollector
    readings: list[Reading] = field(default_factory=list)

    async def step(self) -> None:
        self.plant_clock.advance(TICK_S)
        await self.plant.step()

    async def next_block(self) -> SampleBlock:
        async with asyncio.timeout(GUARD_S):
            while True:
                item = await self.out.get()
                if isinstance(item, SampleBlock):
                    return item
                self.readings.append(item)

    async def next_reading(self, channel: str) -> Reading:
        async with asyncio.timeout(GUARD_S):
            while True:
                for i, seen in enumerate(self.readings):
                    if seen.channel == channel:
                        return self.readings.pop(i)
                item = await self.out.get()
                if isinstance(item, Reading):
                    self.readings.append(item)


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, mode: str = "subscription") -> AsyncIterator[Rig]:
    machine = Machine(small_spec("m1"), seed=1)
    server = MachineOpcUaServer([machine], port=free_port())
    await server.start()
    plant_clock = FakeClock()
    plant = Plant([machine], clock=plant_clock)
    plant.publishers.append(server)
    plant.elapsed_s()
    clock = FakeClock()
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10_000)
    collector = OpcUaCollector("sim", device(server.endpoint, mode=mode), CHANNELS, out, clock)
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(GUARD_S):
            await collector.wait_state("connected")
        yield Rig(server, plant, plant_clock, clock, out, collector)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


def block_ts_ns(server: MachineOpcUaServer, first_index: int) -> int:
    assert server.origin is not None
    ts = datetime_ns(server.origin + timedelta(seconds=first_index / FS))
    assert ts is not None
    return ts


async def test_scalars_and_arrays_arrive_with_source_timestamps(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        blocks: list[SampleBlock] = []
        for _ in range(4):
            await r.step()
            blocks.append(await r.next_block())
        for b in blocks:
            assert b.channel == "m1_vib"
            assert b.sample_rate_hz == FS
            assert b.quality == Quality.GOOD
            assert b.source_ts_ns == block_ts_ns(r.server, b.sequence)
        assert [b.sequence for b in blocks] == [0, 512, 1024, 1536]
        last = r.plant.last[0]
        assert last is not None
        np.testing.assert_array_equal(blocks[-1].samples, last.blocks[0].samples)
        temp = await r.next_reading("m1_temp")
        assert temp.quality == Quality.GOOD
        assert r.server.origin is not None
        assert temp.value == pytest.approx(r.plant.machines[0].temperature_c, abs=1.0)
        assert temp.source_ts_ns >= datetime_ns(r.server.origin)  # type: ignore[operator]
        c = r.collector.counters
        assert (c.connects, c.subscriptions, c.monitored_items) == (1, 1, 4)
        assert (c.samples_lost, c.missed_notifications, c.node_errors) == (0, 0, 0)
        assert r.collector.status()["state"] == "connected"


async def test_polling_reads_in_batches(tmp_path: Path) -> None:
    async with rig(tmp_path, mode="polling") as r:
        await r.step()
        await r.clock.wait_for_sleepers(1)  # the first poll is done
        r.clock.advance(1.0)
        block = await r.next_block()
        assert block.sequence == 0
        assert block.source_ts_ns == block_ts_ns(r.server, 0)
        speed = await r.next_reading("m1_speed")
        assert speed.value == pytest.approx(r.plant.machines[0].spec.shaft_hz, rel=0.05)
        await r.step()
        await r.clock.wait_for_sleepers(1)
        r.clock.advance(1.0)
        block = await r.next_block()
        assert block.sequence == 512  # the repeat of block 0 read by the next poll is dropped
        assert r.collector.counters.subscriptions == 0
        assert r.collector.counters.polls >= 2


async def test_server_restart_is_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.collectors.opcua.collector")
    async with rig(tmp_path) as r:
        await r.step()
        first = await r.next_block()
        restart = asyncio.create_task(r.server.restart())
        async with asyncio.timeout(GUARD_S):
            await r.collector.wait_state("unreachable")
            await restart
            await r.clock.wait_for_sleepers(1)  # the collector waits out its backoff
        assert r.clock.sleeps[-1] == pytest.approx(1.0, rel=0.21)
        r.clock.advance(10.0)
        async with asyncio.timeout(GUARD_S):
            await r.collector.wait_state("connected")
        for _ in range(2):
            await r.step()
        after = [await r.next_block(), await r.next_block()]
        assert [b.sequence for b in after] == [first.next_sequence, first.next_sequence + 512]
        c = r.collector.counters
        assert (c.connects, c.reconnects, c.disconnects) == (2, 1, 1)
        assert c.samples_lost == 0
        assert c.duplicates >= 1  # the re-sent last block after resubscribing is not repeated
    messages = [rec.getMessage() for rec in caplog.records if rec.name.endswith("collector")]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


async def test_a_dead_server_does_not_affect_another(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        dead_out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("dead", 10)
        dead = OpcUaCollector(
            "dead", device(f"opc.tcp://127.0.0.1:{free_port()}/none/"), CHANNELS, dead_out, r.clock
        )
        task = asyncio.create_task(dead.run())
        try:
            async with asyncio.timeout(GUARD_S):
                await dead.wait_state("unreachable")
            for _ in range(3):
                await r.step()
                await r.next_block()  # the healthy server's data keeps flowing
            assert dead.counters.failed_connects >= 1
            assert dead.status()["state"] == "unreachable"
            assert r.collector.state == "connected"
            assert len(dead_out) == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_pipeline_builds_the_collector_and_frames_flow(tmp_path: Path) -> None:
    machine = Machine(small_spec("m1"), seed=1)
    server = MachineOpcUaServer([machine], port=free_port())
    await server.start()
    plant_clock = FakeClock()
    plant = Plant([machine], clock=plant_clock)
    plant.publishers.append(server)
    plant.elapsed_s()
    cfg = parse_config(
        f"""
[gateway]
state_dir = "{tmp_path.as_posix()}"
[dsp]
window = 1024
hop = 512
[channels.m1_vib]
kind = "vibration"
sample_rate_hz = {FS}
[channels.m1_temp]
kind = "temperature"
[assets.m1]
channels = ["m1_vib", "m1_temp"]
[devices.opcua.sim]
endpoint = "{server.endpoint}"
publishing_interval_ms = 20
[[devices.opcua.sim.nodes]]
channel = "m1_vib"
namespace_uri = "{NS}"
kind = "waveform"
node_id = "s=m1.vib0.Waveform"
sequence_node_id = "s=m1.vib0.FirstIndex"
[[devices.opcua.sim.nodes]]
channel = "m1_temp"
namespace_uri = "{NS}"
browse_path = ["Machines", "m1", "Temperature"]
""",
        base_dir=tmp_path,
    )
    frames: list[FeatureFrame] = []
    got = asyncio.Event()

    def on_frame(f: FeatureFrame) -> None:
        frames.append(f)
        got.set()

    pipeline = Pipeline(cfg, on_frame=on_frame)
    await pipeline.start()
    try:
        async with asyncio.timeout(GUARD_S):
            await pipeline.collectors[0].wait_state("connected")  # type: ignore[union-attr]
            for _ in range(4):  # 4 x 512 samples: frames of 1024 with a hop of 512
                plant_clock.advance(TICK_S)
                await plant.step()
            while len([f for f in frames if f.channel == "m1_vib"]) < 3:
                got.clear()
                await got.wait()
        status = pipeline.status()["devices"]
        assert isinstance(status, dict)
        assert status["sim"]["state"] == "connected"
        assert status["sim"]["blocks"] >= 2
    finally:
        assert await pipeline.stop()
        await server.stop()
    vib = [f for f in frames if f.channel == "m1_vib"]
    assert vib[0].asset == "m1"
    assert vib[0].quality == Quality.GOOD
    assert [f.start_ts_ns for f in vib[:3]] == [
        block_ts_ns(server, 0),
        block_ts_ns(server, 512),
        block_ts_ns(server, 1024),
    ]


async def test_unknown_nodes_are_marked_bad_and_the_rest_flows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.collectors.opcua.collector")
    async with rig(tmp_path) as r:
        base = device(r.server.endpoint)
        nodes = [
            *base.nodes,
            {"channel": "x_ns", "namespace_uri": "urn:nowhere", "node_id": "s=m1.Temperature"},
            {"channel": "x_id", "namespace_uri": NS, "node_id": "s=m1.NoSuchNode"},
            {"channel": "x_path", "namespace_uri": NS, "browse_path": ["Machines", "m9"]},
        ]
        cfg = OpcUaDevice.model_validate({**base.model_dump(), "nodes": nodes})
        channels = {
            **CHANNELS,
            **{c: Channel(kind="temperature") for c in ("x_ns", "x_id", "x_path")},
        }
        out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 1000)
        collector = OpcUaCollector("partial", cfg, channels, out, r.clock)
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(GUARD_S):
                await collector.wait_state("connected")
                bad: dict[str, Reading] = {}
                block = None
                await r.step()
                while block is None or len(bad) < 3:
                    item = await out.get()
                    if isinstance(item, SampleBlock):
                        block = item
                    elif item.channel.startswith("x_"):
                        bad[item.channel] = item
            assert all(b.quality == Quality.BAD and math.isnan(b.value) for b in bad.values())
            assert collector.counters.node_errors == 3
            assert collector.counters.monitored_items == 4
            unavailable = collector.status()["unavailable_nodes"]
            assert isinstance(unavailable, dict)
            assert set(unavailable) == {"s=m1.Temperature", "s=m1.NoSuchNode", "Machines/m9"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 3
    assert any("namespace 'urn:nowhere' is not on the server" in e for e in errors)
    assert any("s=m1.NoSuchNode" in e and "BadNodeIdUnknown" in e for e in errors)
    assert any("Machines/m9" in e and "not found" in e for e in errors)
