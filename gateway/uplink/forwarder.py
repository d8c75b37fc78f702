"""The InfluxDB forwarder: reads the journal, writes to the server, acknowledges.

Lifecycle: ``run`` (a supervised stage) loops until cancelled; cancelling loses nothing (records
are acknowledged only after the server accepted them, so an interrupted batch is re-sent, and
re-sending overwrites the same points).

Order: the priority lane (alerts, sensor events) is sent first, at once (when both lanes have
records they alternate batch by batch, so a stream of alerts cannot starve the rest); bulk
records (features, scores) go in batches of ``batch_size`` points, or when ``flush_interval_s``
passed since a partial batch was first seen. Sending is paced to ``max_points_per_s`` (token
bucket), which bounds the catch-up rate after an outage.

Throughput: each batch is one range read of its lane, its records encoded from their stored
JSON text (``stored_line``: payloads are not decoded); the journal's thread reads, encodes and
compresses the next full bulk batch while the current one is in flight (one ahead; a cursor
advances only past a batch the server accepted, in order), and a partial batch waiting to fill is
continued with the records appended since instead of being read and encoded again.

Errors: ``SinkDown`` keeps the batch and retries after an exponential backoff with jitter;
``SinkThrottled`` waits for the server's Retry-After (capped; the backoff when absent);
``SinkRejected`` bisects the batch until the offending records are alone, copies those to the
journal's dead-letter table, counts them and acknowledges past them (the queue never blocks).

Selection: with a ``selector`` (the forwarding policy), bulk records it does not select are
acknowledged unsent (counted in ``skipped``), and a record whose decision must wait holds the
bulk lane (unacknowledged) until its time comes. ``sent_bytes`` counts line-protocol bytes the
server accepted, per asset.

State: ``down`` (the last attempt failed), ``degraded`` (writing, but the oldest unsent record is
older than ``degraded_after_s``: catching up), ``up``. Each change is logged once with the
backlog; ``status()`` has the state, the backlog (records, age of the oldest) and the counters.
The backlog is recounted at most once a second, and less often while counting it takes longer
than a twentieth of that time (a count walks every unsent record).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from gateway.core.clock import Clock
from gateway.store.access import JournalAccess
from gateway.store.journal import Journal, Row
from gateway.uplink.config import InfluxUplinkConfig
from gateway.uplink.influx import InfluxSink, SinkDown, SinkRejected, SinkThrottled
from gateway.uplink.lineproto import stored_line

log = logging.getLogger(__name__)
BACKLOG_REFRESH_S = 1.0  # the backlog count scans the journal: at most this often
#: ... and at most 1/this of the time (a count walks every unsent record: about 1 us each)
BACKLOG_COST_SHARE = 20


#: the payload of the rows given to the selector (it decides on kind, asset and time)
_NO_PAYLOAD: dict[str, object] = {}


class Ref(NamedTuple):
    """A record in a batch. The payload is not kept: a batch holds few objects for the garbage
    collector to walk (a rejected record is read again to copy it to the dead letters)."""

    seq: int
    kind: str
    asset: str


@dataclass
class Batch:
    """Records read from one lane, in ``seq`` order, prepared for sending.

    ``send``/``send_lines`` are the rows to write and their lines; ``body`` is the request body
    of ``send_lines`` when made on the journal's thread (while the previous batch was in
    flight), else ``None``.
    ``kinds`` and ``asset_bytes`` count the sendable records by kind and their line bytes (with
    the newline) by asset; ``skipped_by_asset`` the records not selected.
    """

    rows: list[Ref]
    send: list[Ref] = field(default_factory=list)
    send_lines: list[bytes] = field(default_factory=list)
    body: bytes | None = None
    kinds: Counter[str] = field(default_factory=Counter)
    asset_bytes: Counter[str] = field(default_factory=Counter)
    skipped_by_asset: Counter[str] = field(default_factory=Counter)


class BulkSelector(Protocol):
    #: longest a record may be held for its decision (seconds)
    hold_s: float

    def decide(
        self, journal: Journal, rows: list[Row], now_ns: int
    ) -> tuple[list[Row], list[bool], int | None]:
        """``(rows decided, send each?, wall time in ns the next row can be decided at)``; the
        rows decided are a prefix of ``rows``. The rows' payloads are not given (empty)."""
        ...


class InfluxForwarder:
    def __init__(
        self,
        cfg: InfluxUplinkConfig,
        access: JournalAccess,
        clock: Clock,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.cfg, self.access, self.clock, self.rand = cfg, access, clock, rand
        self._appended_ev = access.appended_event()  # set by every append
        self.name = f"uplink:{cfg.name}"
        self.sink = InfluxSink(cfg)
        self.state = "starting"
        self.sent = 0  # points the server accepted
        self.sent_by_kind: dict[str, int] = {}
        self.rejected = 0  # records dead-lettered
        self.unencodable = 0  # records with nothing to write (acknowledged, not sent)
        self.retries = 0
        self.throttled = 0
        self.last_error = ""
        self.backlog = 0
        self.oldest_age_s = 0.0
        self.changed = asyncio.Event()  # set after each batch and each state change
        self.idle = asyncio.Event()  # set while both lanes are empty
        self._tokens = float(cfg.batch_size)
        self._refill_at = clock.monotonic()
        self._partial_since: float | None = None
        self._backlog_at = float("-inf")
        self._backlog_every = BACKLOG_REFRESH_S
        self._attempt = 0
        self._last_lane = "bulk"
        self._bulk_cursor = 0
        self._prefetch: tuple[int, asyncio.Future[Batch]] | None = None
        self._held: Batch | None = None  # a partial bulk batch waiting to fill (not sent)
        self.selector: BulkSelector | None = None
        self.skipped = 0  # bulk records the selector did not select
        self.sent_bytes: dict[str, int] = {}  # line-protocol bytes accepted, per asset
        self.skipped_by_asset: dict[str, int] = {}
        self._decide_at: int | None = None

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "backlog": self.backlog,
            "oldest_age_s": round(self.oldest_age_s, 3),
            "sent": self.sent,
            "rejected": self.rejected,
            "unencodable": self.unencodable,
            "skipped": self.skipped,
            "retries": self.retries,
            "throttled": self.throttled,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        self.sink.open()
        try:
            await self._refresh_backlog(force=True)
            self._bulk_cursor = await self.access.call(
                self.access.journal.cursor, self.cfg.name, "bulk"
            )
            while True:
                batch, lane = await self._next_batch()
                if batch.rows:
                    await self._deliver(batch, lane)
                    await self._refresh_backlog(force=False)
                    self.changed.set()
        finally:
            self._held = None
            if self._prefetch is not None:
                self._prefetch[1].cancel()
                self._prefetch = None
            await self.sink.close()

    async def drained(self) -> None:
        """Wait until nothing is left to send (for tests and orderly shutdowns)."""
        while True:
            await self.idle.wait()  # (the backlog is counted only when the forwarder is idle)
            self.changed.clear()
            n, _ = await self.access.call(self.access.journal.backlog, self.cfg.name)
            if n == 0:
                return
            await self.changed.wait()

    # -- batching ----------------------------------------------------------------------------

    def _read_encoded(self, lane: str, after: int | None, prior: Batch | None = None) -> Batch:
        """Read a batch (one query), encode it and make its request body: on the journal's
        thread, so the next batch is prepared while this one is in flight. With ``prior`` (a
        partial batch read before, ending at ``after``) only the records after it are read and
        encoded, and the batch returned continues it.

        The cyclic garbage collector is paused meanwhile: the rows read and the records made for
        the selector (thousands of containers, without cycles) are freed by reference counting
        when this returns, instead of being walked by collections while they live."""
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._read_encode(lane, after, prior)
        finally:
            if paused:
                gc.enable()

    def _read_encode(self, lane: str, after: int | None, prior: Batch | None) -> Batch:
        limit = self.cfg.batch_size - (len(prior.rows) if prior is not None else 0)
        journal = self.access.journal
        rows = journal.read_stored(self.cfg.name, limit, lane, after) if limit > 0 else []
        keep: list[bool] | None = None
        if lane == "bulk" and self.selector is not None:
            decided, keep, self._decide_at = self.selector.decide(
                journal,
                [Row(k, ts, a, c, _NO_PAYLOAD, m, q) for q, k, ts, a, c, m, _ in rows],
                self.clock.now_ns(),
            )
            rows = rows[: len(decided)]
        refs = [Ref(t[0], t[1], t[3]) for t in rows]
        b = Batch(refs) if prior is None else prior
        if prior is not None:
            b.rows = prior.rows + refs
            b.body = None
        send, send_lines = b.send, b.send_lines
        kinds, asset_bytes = b.kinds, b.asset_bytes
        known = journal.layouts
        for i, t in enumerate(rows):
            ref = refs[i]
            if keep is not None and not keep[i]:
                b.skipped_by_asset[ref.asset] += 1
                continue
            try:
                line = stored_line(t, known)
            except ValueError:  # (unencodable: acknowledged with the batch, never sent)
                continue
            send.append(ref)
            send_lines.append(line)
            kinds[ref.kind] += 1
            asset_bytes[ref.asset] += len(line) + 1
        if send_lines and (lane == "priority" or len(b.rows) >= self.cfg.batch_size):
            b.body = self.sink.body(send_lines)  # (a partial bulk batch may wait: made if sent)
        return b

    async def _bulk_batch(self) -> Batch:
        """The next bulk batch, prefetched while the previous one was being sent if possible;
        a held partial batch is continued (its records are not read and encoded again)."""
        held, self._held = self._held, None
        if held is not None:
            return await self.access.call(self._read_encoded, "bulk", held.rows[-1].seq, held)
        pre, self._prefetch = self._prefetch, None
        if pre is not None:
            after, task = pre
            if after == self._bulk_cursor:
                return await task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await self.access.call(self._read_encoded, "bulk", self._bulk_cursor)

    async def _next_batch(self) -> tuple[Batch, str]:
        self.idle.clear()
        while True:
            self._appended_ev.clear()
            skipped_priority = self._last_lane == "priority"
            if not skipped_priority:
                prio = await self.access.call(self._read_encoded, "priority", None)
                if prio.rows:
                    self._last_lane = "priority"
                    return prio, "priority"
            self._last_lane = "bulk"  # (after a priority batch, one bulk batch: no starvation)
            batch = await self._bulk_batch()
            bulk = batch.rows
            now = self.clock.monotonic()
            held = self._decide_at
            if held is not None:  # a record's decision waits: what is decided goes as a
                # partial batch; decisions come due at least a flush interval apart
                if bulk:
                    if self._partial_since is None:
                        self._partial_since = now
                    hold = self._partial_since + self.cfg.flush_interval_s - now
                    if hold <= 0:
                        self._partial_since = None
                        return batch, "bulk"
                else:
                    due = (held - self.clock.now_ns()) / 1e9
                    hold = max(due, self.cfg.flush_interval_s)
                self._held = batch if bulk else None
                await self._refresh_backlog(force=False)
                await self._wait_appended(hold)
                continue
            if len(bulk) >= self.cfg.batch_size:
                self._partial_since = None
                # catching up: read and encode the next batch while this one is sent
                nxt = bulk[-1].seq
                self._prefetch = (
                    nxt,
                    asyncio.ensure_future(self.access.call(self._read_encoded, "bulk", nxt)),
                )
                return batch, "bulk"
            self._held = batch if bulk else None  # (kept while it waits to fill)
            if skipped_priority:
                continue  # no full bulk batch: the priority lane is looked at before waiting
            if bulk:
                if self._partial_since is None:
                    self._partial_since = now
                wait = self._partial_since + self.cfg.flush_interval_s - now
                if wait <= 0:
                    self._partial_since = None
                    self._held = None
                    return batch, "bulk"
            else:
                wait = None
                self.idle.set()
            await self._refresh_backlog(force=not bulk)  # idle: the count is cheap
            await self._wait_appended(wait)

    async def _wait_appended(self, limit_s: float | None) -> None:
        tasks: set[asyncio.Future[object]] = {asyncio.ensure_future(self._appended())}
        if limit_s is not None:
            tasks.add(asyncio.ensure_future(self.clock.sleep(limit_s)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _appended(self) -> object:
        return await self._appended_ev.wait()

    async def _pace(self, n: int) -> None:
        """Token bucket of ``max_points_per_s`` (burst: one batch)."""
        rate, cap = self.cfg.max_points_per_s, float(max(self.cfg.batch_size, n))
        while True:
            now = self.clock.monotonic()
            self._tokens = min(cap, self._tokens + (now - self._refill_at) * rate)
            self._refill_at = now
            if self._tokens >= n - 1e-6:  # (tolerance: float rounding must not spin)
                self._tokens -= n
                return
            await self.clock.sleep(max((n - self._tokens) / rate, 1e-3))

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver(self, batch: Batch, lane: str) -> None:
        rows = batch.rows
        skipped = sum(batch.skipped_by_asset.values())
        for asset, n in batch.skipped_by_asset.items():
            self.skipped_by_asset[asset] = self.skipped_by_asset.get(asset, 0) + n
        self.skipped += skipped
        self.unencodable += len(rows) - len(batch.send) - skipped
        if batch.send:
            await self._send(batch.send, batch.send_lines, lane, batch)
        await self.access.call(self.access.journal.ack, self.cfg.name, rows[-1].seq, lane)
        if lane == "bulk":
            self._bulk_cursor = max(self._bulk_cursor, rows[-1].seq)

    async def _send(
        self, rows: Sequence[Ref], lines: Sequence[bytes], lane: str, whole: Batch | None = None
    ) -> None:
        """Write until accepted; a rejected batch is bisected down to the offending records.
        While a bulk batch waits to be retried, alerts that arrived meanwhile go first.
        ``whole``: the batch ``rows`` are all the sendable records of (its body and counts)."""
        while True:
            if self._attempt > 0:
                await self._refresh_backlog(force=False)
            if lane == "bulk" and self._attempt > 0:
                prio = await self.access.call(self._read_encoded, "priority", None)
                if prio.rows:
                    await self._deliver(prio, "priority")
                    continue
            await self._pace(len(lines))
            try:
                body = whole.body if whole is not None else None
                await self.sink.write(lines, self.clock.now_ns() / 1e9, body)
            except SinkThrottled as exc:
                self.throttled += 1
                await self._failed(str(exc))
                wait = exc.retry_after_s
                if wait is None:
                    wait = self.cfg.backoff.delay(self._attempt, self.rand())
                    self._attempt += 1
                await self.clock.sleep(min(wait, self.cfg.max_retry_after_s))
                continue
            except SinkDown as exc:
                await self._failed(str(exc))
                delay = self.cfg.backoff.delay(self._attempt, self.rand())
                self._attempt += 1
                await self.clock.sleep(delay)
                continue
            except SinkRejected as exc:
                self._attempt = 0
                if len(rows) == 1:
                    await self._reject(rows[0], lane, str(exc))
                    return
                mid = len(rows) // 2
                await self._send(rows[:mid], lines[:mid], lane)
                await self._send(rows[mid:], lines[mid:], lane)
                return
            self._attempt = 0
            self.sent += len(rows)
            if whole is not None:
                kinds, asset_bytes = whole.kinds, whole.asset_bytes
            else:
                kinds, asset_bytes = Counter(), Counter()
                for r, line in zip(rows, lines, strict=True):
                    kinds[r.kind] += 1
                    asset_bytes[r.asset] += len(line) + 1
            for k, n in kinds.items():
                self.sent_by_kind[k] = self.sent_by_kind.get(k, 0) + n
            for a, n in asset_bytes.items():
                self.sent_bytes[a] = self.sent_bytes.get(a, 0) + n
            self._ok()
            return

    async def _reject(self, ref: Ref, lane: str, reason: str) -> None:
        self.rejected += 1
        rows = await self.access.call(self.access.journal.read, self.cfg.name, 1, lane, ref.seq - 1)
        if rows and rows[0].seq == ref.seq:
            await self.access.call(self.access.journal.dead_letter, self.cfg.name, rows, reason)
        else:  # (evicted since it was read: nothing left to copy)
            log.warning("uplink %s: record %d is gone from the store", self.cfg.name, ref.seq)
        log.warning(
            "uplink %s: server rejected record %d (%s, %s): %s; moved to dead letters (%d so far)",
            self.cfg.name,
            ref.seq,
            ref.kind,
            ref.asset,
            reason,
            self.rejected,
        )

    # -- state -------------------------------------------------------------------------------

    async def _failed(self, error: str) -> None:
        self.retries += 1
        self.last_error = error
        if self.state != "down":
            await self._refresh_backlog(force=True)
        self._set_state("down")
        self.changed.set()

    def _ok(self) -> None:
        # records the selector holds on purpose are older by up to its hold time
        limit = self.cfg.degraded_after_s + (self.selector.hold_s if self.selector else 0.0)
        self._set_state("degraded" if self.oldest_age_s > limit else "up")

    async def _refresh_backlog(self, force: bool) -> None:
        now = self.clock.monotonic()
        if not force and now - self._backlog_at < self._backlog_every:
            return
        self._backlog_at = now
        t0 = time.perf_counter()  # (what the count costs: a long backlog is counted less often)
        n, oldest = await self.access.call(self.access.journal.backlog, self.cfg.name)
        self._backlog_every = max(
            BACKLOG_REFRESH_S, (time.perf_counter() - t0) * BACKLOG_COST_SHARE
        )
        if n != self.backlog:
            self.changed.set()
        self.backlog = n
        self.oldest_age_s = (
            0.0 if oldest is None else max(0.0, (self.clock.now_ns() - oldest) / 1e9)
        )
        if self.state != "down":
            self._ok()

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        prev, self.state = self.state, state
        msg = "uplink %s %s (was %s): backlog %d record(s), oldest %.1fs%s"
        args = (
            self.cfg.name,
            state,
            prev,
            self.backlog,
            self.oldest_age_s,
            f"; {self.last_error}" if state == "down" else "",
        )
        if state == "down":
            log.warning(msg, *args)
        else:
            log.info(msg, *args)
        self.changed.set()
