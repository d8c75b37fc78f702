"""The store stage: records queue in, journal out.

Takes ``FeatureFrame | Score | AlertEvent`` records. Batches up to ``batch_max`` records or
``flush_interval_s``, whichever comes first, and appends each batch in one transaction on the
journal's thread (fsync never blocks the event loop). Records are encoded as they are taken,
on the event loop (``codec.encode_records``), so that a commit only inserts and an alert's
commit does not wait for the encoding of what came before it (a record that cannot be encoded
is logged, counted and left out). A batch holding an alert or a sensor event is committed as
soon as it is taken, with the records pending before it: the journal always holds a prefix of
what arrived (nothing committed after something that is not).
On close it writes everything still queued, then returns. A batch that fails to write (a full
disk, an I/O error) is kept and retried every ``RETRY_S`` seconds; the failure and the recovery
are logged once each, never dropped.
With a ``deriver``, the rows it derives from each batch (and from ``flush`` at close) are
journaled with the batch. Commit observers get the committed rows as stored (``EncodedRow``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.core.clock import Clock
from gateway.core.records import AlertEvent
from gateway.runtime.queues import QueueClosed
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord, encode_records
from gateway.store.config import StoreConfig
from gateway.store.journal import PRIORITY_KINDS, EncodedRow, Row

log = logging.getLogger(__name__)
RETRY_S = 1.0
_PRIORITY = frozenset(PRIORITY_KINDS)


class RecordSource(Protocol):
    """Where the writer takes records from (a ``BoundedQueue`` of any store record type)."""

    async def get_many(self, limit: int) -> Sequence[StoreRecord]: ...


class Deriver(Protocol):
    """Derives extra rows from the records of each batch (summaries, snapshots)."""

    async def derive(self, records: Sequence[StoreRecord]) -> list[Row]: ...

    def flush(self) -> list[Row]: ...


class StoreWriter:
    name = "store"

    def __init__(
        self,
        cfg: StoreConfig,
        access: JournalAccess,
        inp: RecordSource,
        clock: Clock,
    ) -> None:
        self.cfg, self.access, self.inp, self.clock = cfg, access, inp, clock
        self.journal = access.journal
        #: taken, not yet committed (as stored, in order)
        self._pending: list[EncodedRow] = []
        self.written = 0
        self.last_seq = 0
        self.write_errors = 0
        #: records left out because they could not be encoded (each logged)
        self.encode_errors = 0
        self._failing = False
        self.flushed = asyncio.Event()  # set after every commit (waiters clear it)
        #: when set, rows it derives from each batch are journaled with it
        self.deriver: Deriver | None = None
        #: called on the event loop with each batch of rows just committed, as stored (must
        #: not keep the sequence)
        self.on_commit: list[Callable[[Sequence[EncodedRow]], None]] = []

    @property
    def pending(self) -> int:
        """Records taken from the queue but not yet committed."""
        return len(self._pending)

    def status(self) -> dict[str, object]:
        """Counters; ``drops`` are unacknowledged records evicted by the bounds, by kind."""
        return {
            "written": self.written,
            "last_seq": self.last_seq,
            "pending": len(self._pending),
            "write_errors": self.write_errors,
            "encode_errors": self.encode_errors,
            "state": "failing" if self._failing else "ok",
            "drops": dict(self.journal.drops),
            "pruned": self.journal.pruned,
            "evicting": self.journal.evicting,
            "bytes": self._disk_bytes(),
        }

    def _disk_bytes(self) -> int:
        """Bytes of the journal file and its WAL on disk (``os.stat``, no database access)."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.journal.path}{suffix}").st_size
        return total

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
                self._pending += self._encode(items)
                urgent = AlertEvent in set(map(type, items))  # (alert and sensor rows)
                if self.deriver is not None and (derived := await self.deriver.derive(items)):
                    self._pending += self._encode(derived)
                    urgent = urgent or not _PRIORITY.isdisjoint(r.kind for r in derived)
                if urgent:
                    await self.flush()  # an alert is committed at once, with what came before
                    continue
            except TimeoutError:
                pass
            except QueueClosed:
                if self.deriver is not None:
                    self._pending += self._encode(self.deriver.flush())
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
                seq = await self.access.call(
                    self.journal.append_encoded, batch, self.clock.now_ns()
                )
            except (sqlite3.OperationalError, OSError) as exc:
                self.write_errors += 1
                if not self._failing:
                    log.error(
                        "store write failed (%s); keeping %d records and retrying", exc, len(batch)
                    )
                    self._failing = True
                await self.clock.sleep(RETRY_S)
                continue
            self._pending = []
            self._committed(batch, seq)

    def _committed(self, batch: list[EncodedRow], seq: int) -> None:
        if self._failing:
            log.info("store writes work again")
            self._failing = False
        for observer in self.on_commit:
            observer(batch)
        self.access.notify_appended()
        self.flushed.set()
        if self.written == 0:
            log.info("store: first %d record(s) written to %s", len(batch), self.journal.path)
        self.written += len(batch)
        self.last_seq = seq

    def _encode(self, chunk: Sequence[StoreRecord | Row]) -> list[EncodedRow]:
        """``encode_records(chunk)``; a record that cannot be encoded is logged, counted and
        left out (the others are kept)."""
        try:
            return encode_records(chunk)
        except (TypeError, ValueError):
            pass
        out: list[EncodedRow] = []
        for r in chunk:
            try:
                out += encode_records([r])
            except (TypeError, ValueError) as exc:
                self.encode_errors += 1
                log.error("store: a %s cannot be encoded (%s); left out", type(r).__name__, exc)
        return out

    def close(self) -> None:
        """Close the journal (after its queued calls). Blocking."""
        self.access.close()
