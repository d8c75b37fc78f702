"""Clock abstraction: wall time for timestamps, monotonic time for intervals, awaitable sleep.

Stages take a ``Clock`` instead of calling ``time`` or ``asyncio.sleep`` so tests can drive time
with ``FakeClock`` and never wait on real sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Source of time for stages."""

    def now_ns(self) -> int:
        """Wall-clock time in integer nanoseconds since the Unix epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, only meaningful as differences."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to.

    ``advance(dt)`` moves time forward and wakes every sleeper whose deadline has passed.
    With ``auto_advance=True`` a ``sleep`` moves time itself by the requested amount (and yields
    once to the loop), so code with backoff runs at full speed while ``sleeps`` records every
    requested delay for assertions.
    """

    def __init__(
        self, start_ns: int = 1_700_000_000_000_000_000, *, auto_advance: bool = False
    ) -> None:
        self._t = 0.0
        self._epoch_ns = start_ns
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._sleeper_added = asyncio.Event()

    def now_ns(self) -> int:
        return self._epoch_ns + round(self._t * 1e9)

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self._t + seconds, next(self._counter), fut))
        self._notify()
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and release due sleepers."""
        self._t += seconds
        while self._waiters and self._waiters[0][0] <= self._t + 1e-12:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    async def wait_for_sleepers(self, n: int = 1) -> None:
        """Wait (on events, not time) until at least ``n`` tasks are sleeping on this clock."""
        while self.pending_sleepers < n:
            self._sleeper_added.clear()
            await self._sleeper_added.wait()

    def _notify(self) -> None:
        self._sleeper_added.set()
