"""Run a stage's batches on its worker thread with the next batch already queued.

A stage that awaited each batch before taking the next would leave its worker idle while the
event loop forwards the results and gathers the next batch; under load that gap costs the
throughput of the busiest stage (DSP). ``run_batches`` keeps up to ``depth`` batches handed to
the worker, so they run back to back and in order, and emits their results in the same order.

The worker thread runs one long job for the whole run (it takes batches from a queue and hands
each result back to the loop), and one task takes batches while the caller's task emits: per
batch, the loop only wakes for the batch and for its result (no executor job, task or wait set
per batch).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from queue import SimpleQueue
from typing import Generic, TypeVar

from gateway.runtime.queues import QueueClosed

T = TypeVar("T")
R = TypeVar("R")


def _settle(fut: asyncio.Future[R], ok: bool, value: R | BaseException) -> None:
    """Give ``fut`` the worker's result (``ok``) or exception (on the loop)."""
    if not fut.done():  # (abandoned: cancelled)
        if ok:
            fut.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            fut.set_exception(value)


class _Worker(Generic[T, R]):
    """The job the executor's thread runs: ``work`` on each batch queued, in order, until
    ``stop``; each result goes to its batch's future on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, work: Callable[[list[T]], R]) -> None:
        self.loop, self.work = loop, work
        self.jobs: SimpleQueue[tuple[list[T], asyncio.Future[R]] | None] = SimpleQueue()

    def __call__(self) -> None:
        jobs, work, post = self.jobs, self.work, self.loop.call_soon_threadsafe
        while (job := jobs.get()) is not None:
            items, fut = job
            if fut.cancelled():
                continue  # abandoned (the run ended)
            value: R | BaseException
            try:
                value, ok = work(items), True
            except BaseException as exc:  # noqa: BLE001 (handed to the loop, as an executor does)
                value, ok = exc, False
            try:
                post(_settle, fut, ok, value)
            except RuntimeError:  # the loop is closed: nobody waits for it
                return

    def submit(self, items: list[T]) -> asyncio.Future[R]:
        fut: asyncio.Future[R] = self.loop.create_future()
        self.jobs.put((items, fut))
        return fut

    def stop(self) -> None:
        self.jobs.put(None)


async def run_batches(
    get: Callable[[], Awaitable[list[T]]],
    work: Callable[[list[T]], R],
    emit: Callable[[R], Awaitable[None]],
    executor: Executor,
    depth: int = 2,
) -> None:
    """Take batches with ``get`` until it raises ``QueueClosed``, run ``work`` on each in
    ``executor`` (which must have one worker: batches run in order; it runs one job for the
    whole run), and ``emit`` each result in order; returns once every batch taken was emitted.
    An exception of ``get``, ``work`` or ``emit`` propagates (the batches still in flight are
    abandoned). ``emit`` applying back-pressure holds the next batches: at most ``depth`` are
    taken and not yet emitted."""
    if depth < 1:
        raise ValueError("depth must be >= 1")
    loop = asyncio.get_running_loop()
    worker: _Worker[T, R] = _Worker(loop, work)
    inflight: deque[asyncio.Future[R]] = deque()
    # the emitter waits on ``wake`` while nothing is in flight, the feeder on ``room`` while
    # ``depth`` batches are (each is set by the other side, then dropped)
    wake: list[asyncio.Future[None]] = []
    room: list[asyncio.Future[None]] = []
    closed = False

    def poke(waiters: list[asyncio.Future[None]]) -> None:
        if waiters:
            w = waiters.pop()
            if not w.done():
                w.set_result(None)

    async def feed() -> None:
        nonlocal closed
        try:
            while True:
                while len(inflight) >= depth:
                    w = loop.create_future()
                    room.append(w)
                    await w
                try:
                    items = await get()
                except QueueClosed:
                    return
                inflight.append(worker.submit(items))
                poke(wake)
        finally:
            closed = True
            poke(wake)

    runner = executor.submit(worker)
    feeder = asyncio.ensure_future(feed())
    try:
        while True:
            if inflight:
                result = await inflight[0]
                await emit(result)
                inflight.popleft()
                poke(room)
            elif closed:
                feeder.result()  # (an error of ``get`` propagates)
                return
            else:
                w = loop.create_future()
                wake.append(w)
                await w
    finally:
        feeder.cancel()
        for f in inflight:
            f.cancel()
        worker.stop()
        runner.cancel()  # (not started yet: it never will)
