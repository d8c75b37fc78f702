"""The store stage: records queue in, journal out.

Batches up to ``batch_max`` records or ``flush_interval_s``, whichever comes first, and appends
each batch in one transaction on the store's own thread (fsync never blocks the event loop).
On close it writes everything still queued, then returns. A batch that fails to write is kept
and retried (a full disk is transient); it is not dropped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from gateway.core.clock import Clock
from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Score
from gateway.runtime.queues import BoundedQueue, QueueClosed
from gateway.store.codec import record_row
from gateway.store.config import StoreConfig
from gateway.store.journal import Journal, Row

log = logging.getLogger(__name__)


class StoreWriter:
    name = "store"

    def __init__(
        self,
        cfg: StoreConfig,
        journal: Journal,
        inp: BoundedQueue[FeatureFrame | Score | AlertEvent | ActionRecord],
        clock: Clock,
    ) -> None:
        self.cfg, self.journal, self.inp, self.clock = cfg, journal, inp, clock
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._pending: list[Row] = []
        self.written = 0
        self.last_seq = 0
        self.write_errors = 0
        self._failing = False

    @property
    def pending(self) -> int:
        """Records taken from the queue but not yet committed."""
        return len(self._pending)

    def status(self) -> dict[str, object]:
        return {
            "written": self.written,
            "last_seq": self.last_seq,
            "pending": len(self._pending),
            "write_errors": self.write_errors,
            "state": "failing" if self._failing else "ok",
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        first_at = 0.0  # loop time the oldest pending record arrived
        while True:
            timeout = None
            if self._pending:
                timeout = max(0.0, first_at + self.cfg.flush_interval_s - loop.time())
            try:
                async with asyncio.timeout(timeout):
                    items = await self.inp.get_many(self.cfg.batch_max - len(self._pending))
                if not self._pending:
                    first_at = loop.time()
                self._pending += [record_row(f) for f in items]
            except TimeoutError:
                pass
            except QueueClosed:
                await self.flush()
                return
            if self._pending and (
                len(self._pending) >= self.cfg.batch_max
                or loop.time() - first_at >= self.cfg.flush_interval_s
            ):
                await self.flush()

    async def flush(self) -> None:
        """Append the pending batch; on failure keep it and retry after a pause."""
        while self._pending:
            batch = self._pending
            try:
                seq = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.journal.append, batch
                )
            except (sqlite3.OperationalError, OSError) as exc:
                self.write_errors += 1
                if not self._failing:
                    log.error(
                        "store write failed (%s); keeping %d records and retrying", exc, len(batch)
                    )
                    self._failing = True
                await self.clock.sleep(1.0)
                continue
            if self._failing:
                log.info("store writes work again")
                self._failing = False
            self._pending = []
            if self.written == 0:
                log.info("store: first %d record(s) written to %s", len(batch), self.journal.path)
            self.written += len(batch)
            self.last_seq = seq

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.journal.close()
