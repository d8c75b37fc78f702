"""Async access to one ``Journal``: every call runs on the journal's own thread, in order.

The writer and the uplink forwarders share one ``JournalAccess``, so the SQLite connection is used
by one thread only and fsync never blocks the event loop. Each reader of new records (a
forwarder) takes its own event from ``appended_event()``; every successful append sets all of
them, so readers wait on appends instead of polling, and one reader clearing its event never
hides an append from another.
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
        self._appended: list[asyncio.Event] = []
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the journal's thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def appended_event(self) -> asyncio.Event:
        """A new event, set after every successful append from now on (its reader clears
        it)."""
        ev = asyncio.Event()
        self._appended.append(ev)
        return ev

    def notify_appended(self) -> None:
        for ev in self._appended:
            ev.set()

    def close(self) -> None:
        """Wait for queued calls, then close the journal (idempotent; blocking)."""
        if self._closed:
            return
        self._closed = True
        self.executor.shutdown(wait=True)
        self.journal.close()
