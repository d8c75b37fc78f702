"""Batches that wait briefly for what comes next: fewer, larger batches when items arrive close
together.

A stage whose cost per batch has a large fixed part (the DSP stage: a thread hand-off, and the
caches to fill again after each idle gap) spends much less per item on a few large batches than
on many small ones. Devices polled independently deliver at spread phases, so without waiting
every delivery would be a batch of its own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway.core.clock import Clock
from gateway.runtime.queues import QueueClosed

T = TypeVar("T")


class Gatherer(Generic[T]):
    """``await gatherer()`` is the next batch from ``take`` (a ``BoundedQueue.get_many``): the
    items ready, plus those that arrive soon after, when arrivals come close together.

    An arrival is ``take`` returning. After each one, the next is expected one inter-arrival gap
    later (the shorter of the last two gaps, across batches: the first arrival of a burst after
    a pause expects the burst's spacing, not the pause); the batch waits for it only when that
    falls within ``wait_s`` of the batch's first arrival, never past that deadline and never
    beyond ``limit`` items. So a batch is held at most ``wait_s`` (what it took first is delayed
    by that much at worst), and not at all while arrivals are further apart than ``wait_s``: a
    light load keeps its latency. Nothing is lost: an item that arrives after the deadline
    starts the next batch. A queue closed while waiting ends the batch with what it holds
    (the next call raises ``QueueClosed``). With ``wait_s = 0`` it is ``take(limit)``.

    Times are ``clock``'s (monotonic seconds and its ``sleep``).
    """

    def __init__(
        self, take: Callable[[int], Awaitable[list[T]]], limit: int, wait_s: float, clock: Clock
    ) -> None:
        if limit < 1 or wait_s < 0:
            raise ValueError("need limit >= 1 and wait_s >= 0")
        self.take, self.limit, self.wait_s, self.clock = take, limit, wait_s, clock
        self._last = -math.inf  #: monotonic time of the last arrival
        self._gaps = (math.inf, math.inf)  #: the last two intervals between arrivals
        #: batches that waited for more, and those of them whose wait ran out
        self.waits = 0
        self.timeouts = 0

    def _arrived(self) -> tuple[float, float]:
        """Note an arrival: its time and when the next is expected."""
        now = self.clock.monotonic()
        self._gaps, self._last = (self._gaps[1], now - self._last), now
        return now, now + min(self._gaps)

    async def __call__(self) -> list[T]:
        items = await self.take(self.limit)
        if not self.wait_s:
            return items
        now, expected = self._arrived()
        deadline = now + self.wait_s
        waited = False
        while len(items) < self.limit and expected <= deadline:
            waited = True
            more = await self._take_until(self.limit - len(items), deadline - now)
            if more is None:  # the deadline passed, or the queue closed
                break
            items += more
            now, expected = self._arrived()
        self.waits += waited
        return items

    async def _take_until(self, limit: int, within_s: float) -> list[T] | None:
        """``take(limit)`` if it returns within ``within_s`` seconds, else None (nothing is
        taken: a take waiting for items is cancellable at no loss); None as well once the
        queue is closed."""
        get = asyncio.ensure_future(self.take(limit))
        timer = asyncio.ensure_future(self.clock.sleep(within_s))
        try:
            await asyncio.wait((get, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not get.done():
                get.cancel()  # (takes effect at its next step, before it could take anything)
        if not get.done():
            self.timeouts += 1
            return None
        try:
            return get.result()
        except QueueClosed:
            return None
