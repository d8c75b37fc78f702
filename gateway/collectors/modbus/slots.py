"""A counting limit on concurrent holders (requests in flight), cheaper than ``asyncio.Semaphore``
on the path that matters: taking a free slot is one comparison and one decrement, no call.

Usage (single event loop)::

    if not slots.take():
        await slots.wait()
    try:
        ...
    finally:
        slots.release()

Waiters are served first come, first served: ``release`` hands the slot straight to the oldest
waiter. A waiter cancelled before it got a slot leaves the queue; one cancelled just after a slot
was handed to it passes the slot on, so no slot is ever lost.
"""

from __future__ import annotations

import asyncio
import collections


class Slots:
    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("at least one slot")
        self.free = n
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> bool:
        """Take a free slot if there is one and nobody is queued for it."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for a slot (after ``take`` returned False); returns holding it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed to us as we were cancelled: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give the slot back: to the oldest live waiter, else to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1
