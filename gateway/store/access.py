"""Async access to one ``Journal``: every call runs on the journal's own thread, in order.

The writer and the uplink forwarders share one ``JournalAccess``, so the SQLite connection is used
by one thread only and fsync never blocks the event loop. ``appended`` is set after every
successful append (forwarders wait on it instead of polling).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gateway.store.journal import Journal

T = TypeVar("T")


class JournalAccess:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.appended = asyncio.Event()
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the journal's thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def notify_appended(self) -> None:
        self.appended.set()

    def close(self) -> None:
        """Wait for queued calls, then close the journal (idempotent; blocking)."""
        if self._closed:
            return
        self._closed = True
        self.executor.shutdown(wait=True)
        self.journal.close()
