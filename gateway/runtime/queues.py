"""Bounded queues between stages, each with an explicit when-full policy and drop counters.

Policies:
- ``block``: ``put`` waits for room (back-pressure; nothing is dropped).
- ``drop_newest``: the item being put is discarded.
- ``drop_oldest``: the oldest queued item is discarded to make room.

``close()`` is the end-of-stream signal: ``put`` after close raises ``QueueClosed``; ``get``
returns queued items until the queue is empty, then raises ``QueueClosed``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

from gateway.runtime.config import WhenFull as Policy
from gateway.runtime.ratelimit import RateLimitedLog

T = TypeVar("T")
log = logging.getLogger(__name__)


class QueueClosed(Exception):
    """The queue is closed (and, for ``get``, empty)."""


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    """Wake every waiter of ``waiters`` (each checks again what it waits for)."""
    for w in waiters:
        if not w.done():
            w.set_result(None)
    waiters.clear()


class BoundedQueue(Generic[T]):
    """An asyncio queue of at most ``maxsize`` items with a when-full ``policy``.

    Single event loop only. ``dropped`` counts discarded items; ``put_total`` counts accepted ones.
    Getters wait for items (or the close), blocked putters for room; each waits on a future of
    its own, woken by the change it waits for (taking queued items never suspends).
    """

    def __init__(self, name: str, maxsize: int, policy: Policy = "block") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.name, self.maxsize, self.policy = name, maxsize, policy
        self._items: collections.deque[T] = collections.deque()
        self._getters: list[asyncio.Future[None]] = []  # waiting for items or the close
        self._putters: list[asyncio.Future[None]] = []  # waiting for room or the close
        self._closed = False
        self.dropped = 0
        self.put_total = 0
        self._drop_log = RateLimitedLog(log, interval_s=60.0)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    async def _wait(waiters: list[asyncio.Future[None]]) -> None:
        w = asyncio.get_running_loop().create_future()
        waiters.append(w)
        try:
            await w
        except asyncio.CancelledError:
            if w in waiters:
                waiters.remove(w)
            raise

    async def _room(self) -> None:
        """Wait until the queue has room; ``QueueClosed`` if it is (or gets) closed."""
        while len(self._items) >= self.maxsize and not self._closed:
            await self._wait(self._putters)
        if self._closed:
            raise QueueClosed(self.name)

    async def put(self, item: T) -> bool:
        """Enqueue ``item``; returns False if the policy discarded an item (this or the oldest)."""
        if self._closed:
            raise QueueClosed(self.name)
        accepted = True
        if len(self._items) >= self.maxsize:
            if self.policy == "block":
                await self._room()
            elif self.policy == "drop_newest":
                self._count_drop()
                return False
            else:
                self._items.popleft()
                self._count_drop()
                accepted = False
        self._items.append(item)
        self.put_total += 1
        if self._getters:
            _wake(self._getters)
        return accepted

    async def put_many(self, items: Iterable[T]) -> int:
        """Enqueue ``items`` in order, as ``put`` would one by one but waking getters once per
        chunk that fits; returns how many items the policy discarded (these or older ones)."""
        if self.policy != "block":  # (this class's put: a subclass's put_many does its part)
            return sum([not await BoundedQueue.put(self, it) for it in items])
        pending = items if isinstance(items, list) else list(items)
        start = 0
        while start < len(pending):
            if self._closed:
                raise QueueClosed(self.name)
            if len(self._items) >= self.maxsize:
                await self._room()
            n = min(self.maxsize - len(self._items), len(pending) - start)
            if n == len(pending):
                self._items.extend(pending)
            else:
                self._items.extend(pending[start : start + n])
            self.put_total += n
            start += n
            if self._getters:
                _wake(self._getters)
        return 0

    async def get(self) -> T:
        """Dequeue the oldest item, waiting for one; ``QueueClosed`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise QueueClosed(self.name)
            await self._wait(self._getters)
        item = self._items.popleft()
        if self._putters:
            _wake(self._putters)
        return item

    async def get_many(self, limit: int) -> list[T]:
        """Wait for one item, then take up to ``limit``; ``QueueClosed`` once closed and empty."""
        items = self._items
        while not items:
            if self._closed:
                raise QueueClosed(self.name)
            await self._wait(self._getters)
        if limit >= len(items):
            out = list(items)
            items.clear()
        else:
            out = [items.popleft() for _ in range(limit)]
        if self._putters:
            _wake(self._putters)
        return out

    async def close(self) -> None:
        """End of stream: no more puts; getters drain what is queued, then see ``QueueClosed``."""
        self._closed = True
        _wake(self._getters)
        _wake(self._putters)

    def _count_drop(self) -> None:
        self.dropped += 1
        self._drop_log.warning(
            "queue %s full (%d): dropping %s item (%d dropped so far)",
            self.name,
            self.maxsize,
            "newest" if self.policy == "drop_newest" else "oldest",
            self.dropped,
        )

    def stats(self) -> dict[str, object]:
        return {
            "depth": len(self._items),
            "size": self.maxsize,
            "policy": self.policy,
            "dropped": self.dropped,
            "accepted": self.put_total,
        }
