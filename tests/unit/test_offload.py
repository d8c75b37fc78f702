"""run_batches: results in order, the next batch submitted before the previous is emitted,
at most ``depth`` batches in flight, everything emitted at close, errors propagated."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.runtime.offload import run_batches
from gateway.runtime.queues import BoundedQueue


async def test_results_in_order_and_all_emitted_at_close() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    out: list[list[int]] = []

    async def emit(r: list[int]) -> None:
        out.append(r)

    with ThreadPoolExecutor(max_workers=1) as ex:
        task = asyncio.create_task(
            run_batches(lambda: q.get_many(3), lambda xs: [x * 10 for x in xs], emit, ex)
        )
        await q.put_many(range(10))
        await q.close()
        await task
    assert [x for r in out for x in r] == [x * 10 for x in range(10)]


async def test_next_batch_is_taken_while_the_first_runs_and_depth_bounds_it() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    go = threading.Event()
    emitted: list[int] = []
    taken: list[list[int]] = []
    second = asyncio.Event()
    threads: set[str] = set()

    async def get() -> list[int]:
        items = await q.get_many(1)
        taken.append(items)
        if len(taken) == 2:
            second.set()
        return items

    def work(xs: list[int]) -> int:
        threads.add(threading.current_thread().name)
        if xs[0] == 0:
            go.wait(60)  # hang guard only
        return xs[0]

    async def emit(r: int) -> None:
        emitted.append(r)

    await q.put_many(range(4))
    ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage")
    task = asyncio.create_task(run_batches(get, work, emit, ex, depth=2))
    await asyncio.wait_for(second.wait(), 60)  # hang guard only
    for _ in range(20):  # let the loop run: depth 2 holds the third batch back
        await asyncio.sleep(0)
    assert taken == [[0], [1]]
    assert len(q) == 2
    assert emitted == []
    go.set()
    await q.close()
    await task
    ex.shutdown()
    assert emitted == [0, 1, 2, 3]
    assert threads == {"stage_0"}  # the executor's one thread


async def test_an_error_of_the_work_propagates() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)

    def work(xs: list[int]) -> int:
        raise RuntimeError("boom")

    async def emit(r: int) -> None:
        pass

    with ThreadPoolExecutor(max_workers=1) as ex:
        await q.put(1)
        with pytest.raises(RuntimeError, match="boom"):
            await run_batches(lambda: q.get_many(1), work, emit, ex)


async def test_an_error_of_the_emit_or_the_get_propagates_and_frees_the_worker() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)

    async def emit(r: int) -> None:
        raise ValueError("emit failed")

    async def bad_get() -> list[int]:
        raise OSError("get failed")

    with ThreadPoolExecutor(max_workers=1) as ex:
        await q.put_many(range(5))
        with pytest.raises(ValueError, match="emit failed"):
            await run_batches(lambda: q.get_many(1), lambda xs: xs[0], emit, ex)
        with pytest.raises(OSError, match="get failed"):
            await run_batches(bad_get, lambda xs: xs[0], emit, ex)
        # the worker's job ended with each run: the same executor serves the next one
        out: list[int] = []

        async def keep(r: int) -> None:
            out.append(r)

        await q.close()
        await run_batches(lambda: q.get_many(1), lambda xs: xs[0], keep, ex)
    assert out == [2, 3, 4]  # (0 failed to emit, 1 was in flight then: both abandoned)


async def test_cancelled_run_abandons_its_batches() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    go = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def work(xs: list[int]) -> int:
        started.set()
        go.wait(60)  # hang guard only
        ran.append(xs[0])
        return xs[0]

    async def emit(r: int) -> None:
        pass

    with ThreadPoolExecutor(max_workers=1) as ex:
        await q.put_many(range(3))
        task = asyncio.create_task(run_batches(lambda: q.get_many(1), work, emit, ex))
        await asyncio.wait_for(asyncio.to_thread(started.wait, 60), 60)  # hang guard only
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go.set()
    assert ran == [0]  # the running batch finished; the one queued behind it was dropped
    assert len(q) == 1  # depth 2: the third was never taken
