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


class CountingExecutor(ThreadPoolExecutor):
    """One worker; ``second`` is set when a second batch has been submitted."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0
        self.second = asyncio.Event()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.submitted += 1
        if self.submitted == 2:
            self.second.set()
        return super().submit(fn, *args, **kwargs)


async def test_next_batch_is_queued_while_the_first_runs_and_depth_bounds_it() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    go = threading.Event()
    emitted: list[int] = []

    def work(xs: list[int]) -> int:
        if xs[0] == 0:
            go.wait(60)  # hang guard only
        return xs[0]

    async def emit(r: int) -> None:
        emitted.append(r)

    await q.put_many(range(4))
    ex = CountingExecutor()
    task = asyncio.create_task(run_batches(lambda: q.get_many(1), work, emit, ex, depth=2))
    await asyncio.wait_for(ex.second.wait(), 60)  # hang guard only
    for _ in range(20):  # let the loop run: depth 2 holds the third batch back
        await asyncio.sleep(0)
    assert ex.submitted == 2
    assert emitted == []
    go.set()
    await q.close()
    await task
    ex.shutdown()
    assert emitted == [0, 1, 2, 3]


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
