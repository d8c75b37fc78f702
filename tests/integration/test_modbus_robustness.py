"""Collector robustness against the simulator: busy retries, stale flags, circuit breaker."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice, ModbusTag, ModbusWaveform, PollGroup
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock, SystemClock
from gateway.core.configbase import Backoff
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.runtime.queues import BoundedQueue
from simulators.machine import Machine
from tests.conftest import Sim, small_spec

CHANNELS = {"temp": Channel(kind="temperature")}


def device(port: int, **kw: object) -> ModbusDevice:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "unit_id": 1,
        "timeout_s": 0.3,
        "reconnect": Backoff(initial_s=0.05, max_s=0.2, jitter=0.0),
        "poll_groups": {"default": PollGroup(period_s=0.1)},
        "tags": [ModbusTag(channel="temp", function=4, address=2, type="float32")],
    }
    return ModbusDevice.model_validate({**base, **kw})


async def next_reading(q: BoundedQueue[SampleBlock | Reading], quality: Quality) -> Reading:
    async with asyncio.timeout(30):
        while True:
            r = await q.get()
            if isinstance(r, Reading) and r.quality == quality:
                return r


async def test_busy_answers_are_retried_without_losing_the_poll(port: int) -> None:
    sim = Sim([Machine(small_spec("m1"), seed=1)], port)
    await sim.start()
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    col = ModbusCollector("d", device(port), CHANNELS, q, SystemClock())
    task = asyncio.create_task(col.run())
    try:
        await next_reading(q, Quality.GOOD)
        sim.server.inject("exception", code="busy", count=2)  # two busy answers, then fine
        reads = col.counters.reads
        await next_reading(q, Quality.GOOD)
        while col.counters.reads < reads + 3:
            await next_reading(q, Quality.GOOD)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    assert col.counters.busy == 2
    assert col.counters.disconnects == 0
    assert col.counters.permanent_errors == 0


async def test_a_silent_device_makes_tags_stale_then_fresh(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    sim = Sim([Machine(small_spec("m1"), seed=1)], port)
    await sim.start()
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    col = ModbusCollector("d", device(port, busy_retries=0), CHANNELS, q, SystemClock())
    task = asyncio.create_task(col.run())
    try:
        good = await next_reading(q, Quality.GOOD)
        sim.server.inject("exception", code="busy")  # busy for as long as it lasts
        stale = await next_reading(q, Quality.UNCERTAIN)
        assert stale.channel == "temp"
        assert stale.value == pytest.approx(good.value, abs=0.5)  # the last good value
        assert col.stale == {"temp"}
        sim.server.clear("exception")
        await next_reading(q, Quality.GOOD)
        assert col.stale == set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("stale" in m for m in msgs) == 1
    assert sum("fresh again" in m for m in msgs) == 1
    assert col.counters.disconnects == 0  # busy is not a lost connection


async def test_circuit_breaker_opens_after_repeated_failures(port: int) -> None:
    """Nothing listens: after 3 failed connects the breaker opens and retries at the cooldown."""
    clock = FakeClock(auto_advance=True)
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    cfg = device(port, breaker_threshold=3, breaker_cooldown_s=30.0, stale_after_periods=1000)
    col = ModbusCollector("d", cfg, CHANNELS, q, clock)
    task = asyncio.create_task(col.run())
    try:
        async with asyncio.timeout(30):
            while col.counters.failed_connects < 5:
                col.changed.clear()
                await col.changed.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    reconnect_sleeps = [s for s in clock.sleeps if s != 50.0]  # drop the stale watch's ticks
    assert reconnect_sleeps[:4] == [0.05, 0.1, 30.0, 30.0]
    assert col.breaker == "open"
    assert col.counters.breaker_opens == 1


async def test_breaker_closes_when_the_device_comes_back(port: int) -> None:
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    cfg = device(port, breaker_threshold=2, breaker_cooldown_s=0.3)
    col = ModbusCollector("d", cfg, CHANNELS, q, SystemClock())
    task = asyncio.create_task(col.run())
    sim = Sim([Machine(small_spec("m1"), seed=1)], port)
    try:
        async with asyncio.timeout(30):
            while col.breaker != "open":
                col.changed.clear()
                await col.changed.wait()
        await sim.start()
        await asyncio.wait_for(col.wait_state("connected"), 30)
        assert col.breaker == "closed"
        await next_reading(q, Quality.GOOD)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_one_silent_device_does_not_delay_another(port: int) -> None:
    """Two devices on separate servers: one stops answering (and later drops its clients),
    the other keeps its poll rate throughout; the silent one recovers by itself."""
    from gateway.demo import free_port

    port2 = free_port()
    sims = [
        Sim([Machine(small_spec("a"), seed=1)], port),
        Sim([Machine(small_spec("b"), seed=2)], port2),
    ]
    for s in sims:
        await s.start()
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 100_000)
    channels = {"ta": Channel(kind="temperature"), "tb": Channel(kind="temperature")}
    cols = [
        ModbusCollector(
            name,
            device(p, tags=[ModbusTag(channel=ch, function=4, address=2, type="float32")]),
            channels,
            q,
            SystemClock(),
        )
        for name, p, ch in (("a", port, "ta"), ("b", port2, "tb"))
    ]
    tasks = [asyncio.create_task(c.run()) for c in cols]
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.wait_state("connected") for c in cols))
            sims[0].server.inject("no_response")
            await cols[0].wait_state("unreachable")
            # while "a" is down, "b" delivers readings at its 0.1 s period: count 10 of them
            got = 0
            while got < 10:
                r = await q.get()
                if isinstance(r, Reading) and r.channel == "tb" and r.quality == Quality.GOOD:
                    got += 1
            assert cols[0].state == "unreachable"
            sims[0].server.clear("no_response")
            await cols[0].wait_state("connected")
            sims[0].server.inject("drop_connections")
            await cols[0].wait_state("unreachable")
            await cols[0].wait_state("connected")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in sims:
            await s.stop()
    assert cols[1].counters.disconnects == 0
    assert cols[1].counters.late_polls == 0  # never held up by the other device
    assert cols[0].counters.disconnects >= 2


async def test_a_wrong_ring_address_is_counted_and_tags_keep_flowing(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    from simulators import modbus_map as M

    caplog.set_level(logging.INFO, logger="gateway")
    sim = Sim([Machine(small_spec("m1"), seed=1)], port)
    await sim.start()
    bad_ring = ModbusWaveform(
        channel="v",
        ring_address=M.register_count(1) + 10,
        ring_length=1024,
        sequence_address=M.CHANNEL_HEADER_BASE,
        scale=0.001,
        period_s=0.05,
    )
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    channels = {**CHANNELS, "v": Channel(kind="vibration", sample_rate_hz=5120)}
    col = ModbusCollector("d", device(port, waveforms=[bad_ring]), channels, q, SystemClock())
    task = asyncio.create_task(col.run())
    try:
        for _ in range(5):  # temperatures keep arriving while every ring read fails
            await next_reading(q, Quality.GOOD)
        while col.counters.permanent_errors < 3:
            await next_reading(q, Quality.GOOD)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    assert col.counters.disconnects == 0
    assert sum("waveform v not available" in r.getMessage() for r in caplog.records) == 1
