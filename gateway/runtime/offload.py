"""Run a stage's batches on its worker thread with the next batch already queued.

A stage that awaited each batch before taking the next would leave its worker idle while the
event loop forwards the results and gathers the next batch; under load that gap costs the
throughput of the busiest stage (DSP). ``run_batches`` keeps up to ``depth`` batches submitted
to a one-worker executor, so they run back to back and in order, and emits their results in the
same order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

from gateway.runtime.queues import QueueClosed

T = TypeVar("T")
R = TypeVar("R")


async def run_batches(
    get: Callable[[], Awaitable[list[T]]],
    work: Callable[[list[T]], R],
    emit: Callable[[R], Awaitable[None]],
    executor: Executor,
    depth: int = 2,
) -> None:
    """Take batches with ``get`` until it raises ``QueueClosed``, run ``work`` on each in
    ``executor`` (which must have one worker: batches run in order), and ``emit`` each result
    in order; returns once every batch taken was emitted. An exception of ``work`` or ``emit``
    propagates (the batches still in flight are abandoned). ``emit`` applying back-pressure
    holds the next batches: at most ``depth`` are submitted and not yet emitted."""
    loop = asyncio.get_running_loop()
    inflight: deque[asyncio.Future[R]] = deque()
    getter: asyncio.Future[list[T]] | None = None
    closed = False
    try:
        while True:
            if not closed and getter is None and len(inflight) < depth:
                getter = asyncio.ensure_future(get())
            waits: set[asyncio.Future[object]] = set()
            if getter is not None:
                waits.add(getter)  # type: ignore[arg-type]
            if inflight:
                waits.add(inflight[0])  # type: ignore[arg-type]
            if not waits:
                return  # closed, everything emitted
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if getter is not None and getter.done():
                try:
                    items = getter.result()
                except QueueClosed:
                    closed = True
                else:
                    inflight.append(loop.run_in_executor(executor, work, items))
                getter = None
            while inflight and inflight[0].done():
                await emit(inflight.popleft().result())
    finally:
        if getter is not None:
            getter.cancel()
        for f in inflight:
            f.cancel()
