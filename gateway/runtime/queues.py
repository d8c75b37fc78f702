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


class BoundedQueue(Generic[T]):
    """An asyncio queue of at most ``maxsize`` items with a when-full ``policy``.

    Single event loop only. ``dropped`` counts discarded items; ``put_total`` counts accepted ones.
    """

    def __init__(self, name: str, maxsize: int, policy: Policy = "block") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.name, self.maxsize, self.policy = name, maxsize, policy
        self._items: collections.deque[T] = collections.deque()
        self._changed = asyncio.Condition()
        self._closed = False
        self.dropped = 0
        self.put_total = 0
        self._drop_log = RateLimitedLog(log, interval_s=60.0)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> bool:
        """Enqueue ``item``; returns False if the policy discarded an item (this or the oldest)."""
        async with self._changed:
            if self._closed:
                raise QueueClosed(self.name)
            accepted = True
            if len(self._items) >= self.maxsize:
                if self.policy == "block":
                    await self._changed.wait_for(
                        lambda: len(self._items) < self.maxsize or self._closed
                    )
                    if self._closed:
                        raise QueueClosed(self.name)
                elif self.policy == "drop_newest":
                    self._count_drop()
                    return False
                else:
                    self._items.popleft()
                    self._count_drop()
                    accepted = False
            self._items.append(item)
            self.put_total += 1
            self._changed.notify_all()
            return accepted

    async def put_many(self, items: Iterable[T]) -> int:
        """Enqueue ``items`` in order, as ``put`` would one by one but waking getters once per
        chunk that fits; returns how many items the policy discarded (these or older ones)."""
        if self.policy != "block":  # (this class's put: a subclass's put_many does its part)
            return sum([not await BoundedQueue.put(self, it) for it in items])
        pending = list(items)
        start = 0
        while start < len(pending):
            async with self._changed:
                if self._closed:
                    raise QueueClosed(self.name)
                await self._changed.wait_for(
                    lambda: len(self._items) < self.maxsize or self._closed
                )
                if self._closed:
                    raise QueueClosed(self.name)
                n = min(self.maxsize - len(self._items), len(pending) - start)
                self._items.extend(pending[start : start + n])
                self.put_total += n
                start += n
                self._changed.notify_all()
        return 0

    async def get(self) -> T:
        """Dequeue the oldest item, waiting for one; ``QueueClosed`` once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._closed)
            if not self._items:
                raise QueueClosed(self.name)
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    async def get_many(self, limit: int) -> list[T]:
        """Wait for one item, then take up to ``limit``; ``QueueClosed`` once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._closed)
            if not self._items:
                raise QueueClosed(self.name)
            out = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
            self._changed.notify_all()
            return out

    async def close(self) -> None:
        """End of stream: no more puts; getters drain what is queued, then see ``QueueClosed``."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

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
