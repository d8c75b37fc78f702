"""Gatherer: no wait under a light load, arrivals close together gathered into one batch, never
held past its deadline nor beyond its limit, nothing lost at the deadline or at the close; and
the DSP stage taking its batches that way. Time is a FakeClock's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from gateway.config.plant import Asset, Channel
from gateway.core.clock import FakeClock
from gateway.core.records import FeatureFrame, Reading, SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.stage import DspStage
from gateway.runtime.gather import Gatherer
from gateway.runtime.queues import BoundedQueue, QueueClosed

WAIT = 0.008


def setup(
    limit: int = 10, wait_s: float = WAIT
) -> tuple[BoundedQueue[int], FakeClock, Gatherer[int]]:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    clock = FakeClock()
    return q, clock, Gatherer(q.get_many, limit, wait_s, clock)


async def arrive(q: BoundedQueue[int], clock: FakeClock, dt: float, *items: int) -> None:
    clock.advance(dt)
    await q.put_many(items)


async def until(cond: Callable[[], bool]) -> None:
    """Let the loop run until ``cond`` holds (no time passes on the clock)."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def held(
    q: BoundedQueue[int], clock: FakeClock, g: Gatherer[int], gap: float
) -> asyncio.Task[list[int]]:
    """After a first arrival (taken at once), item 2 arrives ``gap`` later: the batch taking
    it, which has started to wait for the next."""
    await arrive(q, clock, 0.0, 1)
    assert await g() == [1]  # the first arrival: no gap known yet
    await arrive(q, clock, gap, 2)
    batch = asyncio.create_task(g())
    await clock.wait_for_sleepers(1)
    assert not batch.done()
    return batch


async def test_arrivals_further_apart_than_the_wait_are_never_held() -> None:
    q, clock, g = setup()
    for i in range(4):
        await arrive(q, clock, 0.020, i)  # 20 ms apart
        assert await g() == [i]
    assert clock.sleeps == []
    assert g.waits == 0


async def test_the_next_arrival_joins_the_batch_when_it_is_due_within_the_wait() -> None:
    q, clock, g = setup()
    batch = await held(q, clock, g, 0.005)  # 5 ms apart: the next is due at +5 ms < +8 ms
    # 5 ms later: the one after would come past the deadline, so the batch goes at once
    await arrive(q, clock, 0.005, 3, 4)
    assert await batch == [2, 3, 4]
    assert g.waits == 1
    assert g.timeouts == 0
    assert clock.monotonic() == pytest.approx(0.010)


async def test_a_batch_is_never_held_past_its_deadline_and_a_late_item_starts_the_next() -> None:
    q, clock, g = setup()
    batch = await held(q, clock, g, 0.004)
    await arrive(q, clock, 0.003, 3)  # due again within the wait: keeps waiting
    await until(lambda: len(clock.sleeps) == 2)
    assert not batch.done()
    clock.advance(0.005)  # 8 ms after 2 arrived: the deadline
    assert await batch == [2, 3]
    assert clock.sleeps == [pytest.approx(WAIT), pytest.approx(0.005)]
    assert g.timeouts == 1
    await arrive(q, clock, 0.009, 4)  # past the deadline: the next batch's
    nxt = asyncio.create_task(g())
    await until(lambda: len(clock.sleeps) == 3)  # (due 3 ms after it, as the last gap but one)
    clock.advance(WAIT)
    assert await nxt == [4]  # nothing was lost


async def test_a_burst_after_a_pause_is_gathered_whole() -> None:
    q, clock, g = setup()
    first = await held(q, clock, g, 0.001)  # a first burst, 1 ms apart
    clock.advance(WAIT)  # nothing more comes before the deadline
    assert await first == [2]
    await arrive(q, clock, 0.100, 3)  # after a pause: the burst's spacing is expected again
    batch = asyncio.create_task(g())
    await until(lambda: len(clock.sleeps) == 2)  # waiting for the next
    await arrive(q, clock, 0.001, 4)
    await until(lambda: len(clock.sleeps) == 3)  # and for the one after
    await arrive(q, clock, 0.001, 5)
    await until(lambda: len(clock.sleeps) == 4)
    assert not batch.done()
    clock.advance(0.006)  # the deadline: 8 ms after 3 came
    assert await batch == [3, 4, 5]


async def test_a_full_batch_is_not_held() -> None:
    q, clock, g = setup(limit=3)
    await arrive(q, clock, 0.0, 1)
    await g()
    await arrive(q, clock, 0.001, 2, 3, 4, 5)
    assert await g() == [2, 3, 4]
    assert clock.sleeps == []
    assert g.waits == 0


async def test_the_close_ends_a_held_batch_with_what_it_holds() -> None:
    q, clock, g = setup()
    batch = await held(q, clock, g, 0.002)
    await q.close()
    assert await batch == [2]
    with pytest.raises(QueueClosed):
        await g()


async def test_no_wait_configured_takes_what_is_there() -> None:
    q, clock, g = setup(wait_s=0.0)
    for i in range(3):
        await arrive(q, clock, 0.001, i)
        assert await g() == [i]
    assert clock.sleeps == []
    assert g.waits == 0
    with pytest.raises(ValueError, match="need limit"):
        Gatherer(q.get_many, 0, 0.0, clock)
    with pytest.raises(ValueError, match="need limit"):
        Gatherer(q.get_many, 1, -1.0, clock)


async def test_the_dsp_stage_runs_deliveries_arriving_close_together_as_one_batch() -> None:
    fs = 5120.0
    cfg = DspConfig(window=256, hop=256, batch_wait_ms=8.0)
    channels = {f"v{i}": Channel(kind="vibration", sample_rate_hz=fs) for i in range(2)}
    assets = {"a": Asset(channels=list(channels))}
    inp: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 100)
    out: BoundedQueue[FeatureFrame] = BoundedQueue("frames", 1000)
    clock = FakeClock()
    stage = DspStage(cfg, channels, assets, inp, out, clock)
    batches: list[int] = []
    stage.after_emit = lambda: batches.append(stage.frames)
    task = asyncio.create_task(stage.run())
    x = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    ts = 1_700_000_000_000_000_000

    async def deliver(dt: float, k: int, channel: str) -> None:
        clock.advance(dt)
        await inp.put(SampleBlock(channel, ts + k * 50_000_000, 0, fs, x, k * 256))

    await deliver(0.0, 0, "v0")  # one window each
    await out.get_many(10)
    await deliver(0.005, 0, "v1")  # 5 ms later: held for the next
    await clock.wait_for_sleepers(1)
    await deliver(0.005, 1, "v0")
    got = [f.channel for f in await out.get_many(10)]
    assert got == ["v1", "v0"]
    assert batches == [1, 3]
    assert stage.status()["batches_held"] == 1
    await inp.close()
    await task
