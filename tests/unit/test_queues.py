"""Bounded queues: each when-full policy, drop counters, close-and-drain semantics."""

from __future__ import annotations

import asyncio

import pytest

from gateway.runtime.queues import BoundedQueue, QueueClosed


async def test_drop_oldest_keeps_newest_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "drop_oldest")
    for i in range(5):
        await q.put(i)
    assert q.dropped == 2
    assert [await q.get() for _ in range(3)] == [2, 3, 4]


async def test_drop_newest_keeps_oldest_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "drop_newest")
    results = [await q.put(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert q.dropped == 2
    assert await q.get_many(10) == [0, 1, 2]


async def test_block_applies_back_pressure_without_loss() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 2, "block")
    await q.put(0)
    await q.put(1)
    putter = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert not putter.done()  # waiting for room
    assert await q.get() == 0
    await putter
    assert q.dropped == 0
    assert await q.get_many(10) == [1, 2]


async def test_close_drains_then_signals_end() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 5)
    await q.put(1)
    await q.put(2)
    await q.close()
    with pytest.raises(QueueClosed):
        await q.put(3)
    assert await q.get() == 1
    assert await q.get_many(5) == [2]
    with pytest.raises(QueueClosed):
        await q.get()


async def test_close_wakes_a_waiting_getter() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 5)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await q.close()
    with pytest.raises(QueueClosed):
        await getter


async def test_put_many_blocks_in_chunks_and_keeps_order() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "block")
    putter = asyncio.create_task(q.put_many(range(8)))
    await asyncio.sleep(0)
    assert not putter.done()
    assert len(q) == 3
    got: list[int] = []
    while len(got) < 8:
        got += await q.get_many(2)
    assert await putter == 0
    assert got == list(range(8))
    assert q.put_total == 8
    assert q.dropped == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_put_many_applies_the_drop_policies_item_by_item(policy: str) -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, policy)  # type: ignore[arg-type]
    assert await q.put_many(range(5)) == 2
    assert q.dropped == 2
    assert await q.get_many(10) == ([2, 3, 4] if policy == "drop_oldest" else [0, 1, 2])


async def test_put_many_after_close_raises() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "block")
    await q.close()
    with pytest.raises(QueueClosed):
        await q.put_many([1])
