"""The durable journal: an append-only SQLite file (WAL) of records with per-sink cursors.

Contract: a record is *accepted* once ``append`` returns; from then on it survives a crash or a
power cut (``synchronous=FULL``). Each record gets a strictly increasing ``seq``. Records travel
in *lanes*: ``priority`` (alerts and sensor events) and ``bulk`` (everything else: features,
scores, and any kind added later). A sink reads a lane in ``seq`` order after its acknowledged
cursor for that lane and advances it with ``ack``; cursors are durable and keyed by sink name, so
changing a sink's settings keeps its backlog.

Bounds (``Bounds``): before each append the journal keeps the bytes its file uses under
``min(max_bytes - WAL allowance, file size + free disk - WAL growth left - min_free_bytes)``; the
WAL is checkpointed at an eighth of ``max_bytes`` (at most 1 MB), gets a quarter of it, and is
truncated after each eviction, so file plus WAL stay within ``max_bytes`` (for batches small
against it). Eviction commits in its own transaction before the batch's. It frees room by
deleting, oldest first, records every configured sink has acknowledged, then unacknowledged
features, then scores, then other bulk kinds; priority records go last, only when nothing else
is left (each such drop is logged as an error). Records stored more than ``max_age_s`` (bulk)
or ``priority_max_age_s`` ago are deleted too: their age is the gateway's, from ``seq_times``
(the last ``seq`` at each age check, every ``AGE_CHECK_NS``), never a device's source time (a
device with a wrong clock must not get its records deleted unsent). Every unacknowledged
record deleted is a *drop*, counted by kind in ``drops``.

Payloads are stored as compact JSON (orjson; non-finite numbers as ``null``). Feature rows the
store writer encodes hold their values only, their names and units being stored once in the
``layouts`` table (``gateway.store.layouts``: each registered layout is stored with the first rows
appended after it was registered); ``read`` gives every feature payload in full. Only the priority
lane is indexed (a partial index), so bulk appends cost no index update.

The journal is used from one thread at a time (see ``JournalAccess``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.core.errors import ResourceUnavailableError
from gateway.store import layouts
from gateway.store.layouts import Layout

log = logging.getLogger(__name__)

PRIORITY_KINDS = ("alert", "sensor")
LANES = ("priority", "bulk")
#: order in which unacknowledged bulk records are evicted when the journal is full
EVICTION_ORDER = ("feature", "score")
ROW_OVERHEAD = 48  # approximate bytes a row costs beyond its text columns
#: rows per multi-row INSERT, largest first (any count is a sum of these; at most 384
#: parameters a statement, below every SQLite build's limit)
INSERT_CHUNKS = (64, 16, 4, 1)
_INSERT_SQL = {
    n: "INSERT INTO records(kind, ts_ns, asset, channel, model_version, payload) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    for n in INSERT_CHUNKS
}
WAL_MAX_BYTES = 1 << 20  # WAL checkpoint threshold (SQLite's default is 1000 pages)
AGE_CHECK_NS = 10_000_000_000  # age eviction runs at most this often (it scans the table)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    asset TEXT NOT NULL,
    channel TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL
);
DROP INDEX IF EXISTS records_kind;
CREATE INDEX IF NOT EXISTS records_priority ON records(seq) WHERE kind IN ('alert', 'sensor');
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink TEXT NOT NULL,
    lane TEXT NOT NULL,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (sink, lane)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    asset TEXT NOT NULL,
    channel TEXT NOT NULL,
    model_version TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seq_times (
    ts_ns INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""
    + layouts.LAYOUTS_SCHEMA
)

_COLS = "seq, kind, ts_ns, asset, channel, model_version, payload"
#: the priority kinds as SQL literals: with literals (not bound parameters) SQLite can prove a
#: query's ``kind IN (...)`` implies the partial index's and use it instead of scanning the table
_PRIO_SQL = ",".join(f"'{k}'" for k in PRIORITY_KINDS)


class EncodedRow(NamedTuple):
    """A row as stored: its columns in insert order, ``payload`` as its JSON text."""

    kind: str
    ts_ns: int
    asset: str
    channel: str
    model_version: str
    payload: str


#: (seq, kind, ts_ns, asset, channel, model_version, payload JSON as UTF-8 bytes): a stored record
StoredRow = tuple[int, str, int, str, str, str, bytes]
_STORED_COLS = "seq, kind, ts_ns, asset, channel, model_version, CAST(payload AS BLOB)"


def encode_payload(payload: dict[str, object]) -> str:
    """Compact JSON (orjson); non-finite numbers become ``null``."""
    return orjson.dumps(payload).decode()


def decode_payload(text: str) -> dict[str, object]:
    try:
        out = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN/Infinity written by an older version
        out = json.loads(text)
    assert isinstance(out, dict)
    return out


def encode_rows(rows: Iterable[Row]) -> list[EncodedRow]:
    """Rows as stored (see ``encode_payload``)."""
    return [
        EncodedRow(r.kind, r.ts_ns, r.asset, r.channel, r.model_version, encode_payload(r.payload))
        for r in rows
    ]


def lane_of(kind: str) -> str:
    """The lane a record kind travels in."""
    return "priority" if kind in PRIORITY_KINDS else "bulk"


@dataclass(frozen=True)
class Row:
    """One stored record. ``payload`` is a JSON object; ``seq`` is 0 until stored."""

    kind: str
    ts_ns: int
    asset: str
    channel: str
    payload: dict[str, object]
    model_version: str = ""
    seq: int = 0


@dataclass(frozen=True)
class Bounds:
    """Limits of the journal. Sizes in bytes, ages in seconds; ``None`` means no limit."""

    max_bytes: int | None = None
    min_free_bytes: int = 0
    max_age_s: float | None = None
    priority_max_age_s: float | None = None
    #: fraction of the limit eviction frees down to (hysteresis, so it does not run every append)
    low_water: float = 0.9


def _row(t: tuple[int, str, int, str, str, str, str], known: dict[str, Layout]) -> Row:
    s, k, ts, a, c, m, p = t
    payload = decode_payload(p)
    if k == "feature" and "layout" in payload:
        payload = layouts.expand(payload, known)
    return Row(k, ts, a, c, payload, m, s)  # (positional: half the cost of keywords)


class Journal:
    """The SQLite journal at ``path`` (created if missing). ``sinks`` are the configured sinks:
    a record is acknowledged (and may be deleted without counting a drop) once all of them acked
    it. ``ResourceUnavailableError`` if the file cannot be opened."""

    def __init__(
        self,
        path: Path,
        synchronous: str = "FULL",
        bounds: Bounds | None = None,
        sinks: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.bounds = bounds or Bounds()
        self.sinks = tuple(sinks)
        #: sinks that read the bulk lane only (escalation): they do not hold back alerts
        self.bulk_only: frozenset[str] = frozenset()
        self.drops: Counter[str] = Counter()  # unacknowledged records evicted, by kind
        self.pruned = 0  # acknowledged records deleted to make room or by age
        self.evicting = False
        self._drops_tx: Counter[str] = Counter()
        self._pruned_tx = 0
        self._next_age_check_ns = 0
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # owner-only from the start; SQLite gives its -wal and -shm files the same mode
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            self._db.executescript(SCHEMA)
            layouts.prune(self._db)
            #: the feature layouts stored in this journal, by id (also those another connection
            #: stored: reloaded when a read finds more stored than known)
            self.layouts: dict[str, Layout] = layouts.load(self._db)
            self._registered_seen = 0  # registered layouts already looked at
            (self.page_size,) = self._db.execute("PRAGMA page_size").fetchone()
            # the WAL is checkpointed at an eighth of the budget (at most 1 MB) and gets a
            # quarter of it: room for one more transaction
            wal_pages = WAL_MAX_BYTES // int(self.page_size)
            if self.bounds.max_bytes is not None:
                wal_pages = max(16, min(wal_pages, self.bounds.max_bytes // 8 // self.page_size))
            self.wal_bytes = 2 * wal_pages * int(self.page_size)
            self._db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            self._db.execute(f"PRAGMA journal_size_limit={self.wal_bytes}")
        except (OSError, sqlite3.Error) as exc:
            raise ResourceUnavailableError(f"cannot open store {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # -- writing ---------------------------------------------------------------------------

    def append(self, rows: Iterable[Row], now_ns: int | None = None) -> int:
        """Write ``rows`` in one transaction after making room within the bounds; returns the
        last ``seq`` assigned (0 if none). ``now_ns`` (wall time) drives age eviction.
        ``sqlite3.OperationalError`` (e.g. disk full) leaves the journal unchanged."""
        return self.append_encoded(encode_rows(rows), now_ns)

    def append_encoded(self, data: Sequence[EncodedRow], now_ns: int | None = None) -> int:
        """``append`` for rows already encoded by ``encode_rows`` or ``codec.encode_records``
        (compact feature rows: encoded in this process, so that their layouts are registered)."""
        if not data:
            return 0
        try:
            return self._append(data, now_ns)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):  # hand the WAL's spare space back, then report
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raise

    def _append(self, data: Sequence[EncodedRow], now_ns: int | None) -> int:
        incoming = sum(len(d[5]) + len(d[3]) + len(d[4]) + ROW_OVERHEAD for d in data)
        self._drops_tx, self._pruned_tx = Counter(), 0
        evicted = False
        b = self.bounds
        bounded = b.max_bytes is not None or b.min_free_bytes > 0
        aged = (b.max_age_s or b.priority_max_age_s) and now_ns is not None
        mark = False  # an age check: note when the rows of this batch were stored
        if bounded or aged:
            with self._tx():  # make room in its own transaction, so each stays small
                if aged and now_ns is not None and now_ns >= self._next_age_check_ns:
                    self._evict_by_age(now_ns)
                    self._next_age_check_ns = now_ns + AGE_CHECK_NS
                    mark = True
                self._make_room(incoming)
                evicted = bool(self._drops_tx) or self._pruned_tx > 0
        self.drops.update(self._drops_tx)
        self.pruned += self._pruned_tx
        if evicted:  # give the WAL back its space at once
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        seen = self._registered_seen
        new: dict[str, Layout] = {}
        if len(layouts.REGISTERED) != seen:  # (layouts are only ever added)
            now = layouts.REGISTERED.copy()  # (registered from other threads meanwhile)
            new = {k: v for k, v in now.items() if k not in self.layouts}
            seen = len(now)
        with self._tx():
            if new:  # with the rows that may use them
                self._db.executemany(
                    "INSERT OR IGNORE INTO layouts(id, names, units) VALUES (?, ?, ?)",
                    layouts.rows(new),
                )
            last = self._insert(data)
            if mark:  # every seq up to ``last`` was stored by ``now_ns``
                self._db.execute(
                    "INSERT OR REPLACE INTO seq_times(ts_ns, seq) VALUES (?, ?)", (now_ns, last)
                )
        self.layouts.update(new)  # (once committed)
        self._registered_seen = seen
        return last

    def _insert(self, data: Sequence[EncodedRow]) -> int:
        """Insert ``data`` in order (inside the caller's transaction); returns the last seq.

        Rows go in multi-row statements of ``INSERT_CHUNKS`` rows (each size's statement is
        prepared once and cached): for batches of 100 to 500 rows, about a third less CPU than
        one statement run per row (``executemany``)."""
        i, n = 0, len(data)
        last: int | None = None
        for size in INSERT_CHUNKS:
            sql = _INSERT_SQL[size]
            while n - i >= size:
                last = self._db.execute(
                    sql, list(chain.from_iterable(data[i : i + size]))
                ).lastrowid
                i += size
        if last is None:  # (not reported)
            (last,) = self._db.execute("SELECT max(seq) FROM records").fetchone()
        return int(last)

    def limit_pages(self, pages: int | None) -> None:
        """Cap the file at ``pages`` pages (``None``: SQLite's default). Past the cap writes fail
        as on a full disk; used by tests and by deployments on a shared partition."""
        n = pages if pages is not None else 0xFFFFFFFE
        self._db.execute(f"PRAGMA max_page_count={int(n)}")

    # -- reading and acknowledging ----------------------------------------------------------

    def read(
        self, sink: str, limit: int, lane: str = "bulk", after: int | None = None
    ) -> list[Row]:
        """Up to ``limit`` records of ``lane`` after ``sink``'s cursor for it (or after ``after``),
        in ``seq`` order."""
        got = self._select(_COLS, sink, limit, lane, after)
        known = self._known_layouts()
        return [_row(t, known) for t in got]

    def read_stored(
        self, sink: str, limit: int, lane: str = "bulk", after: int | None = None
    ) -> list[StoredRow]:
        """``read`` without decoding the payloads: each record as stored, its payload the UTF-8
        bytes of its JSON text (for encoders that work on the text, like the uplink's; compact
        feature payloads as they are: ``self.layouts`` has their layouts)."""
        got: list[StoredRow] = self._select(_STORED_COLS, sink, limit, lane, after)
        self._known_layouts()
        return got

    def _known_layouts(self) -> dict[str, Layout]:
        """``self.layouts``, first reloaded if the file holds more (stored by another connection
        to it). Called after reading rows: their layouts were committed with or before them."""
        (n,) = self._db.execute("SELECT count(*) FROM layouts").fetchone()
        if n != len(self.layouts):
            self.layouts.update(layouts.load(self._db))
        return self.layouts

    def _select(self, cols: str, sink: str, limit: int, lane: str, after: int | None) -> list[Any]:
        if after is None:
            after = self.cursor(sink, lane)
        if lane == "priority":  # (through the partial index: no scan of the bulk backlog)
            where = f"kind IN ({_PRIO_SQL}) AND seq > ?"
        else:
            where = f"seq > ? AND kind NOT IN ({_PRIO_SQL})"
        rows: list[Any] = self._db.execute(
            f"SELECT {cols} FROM records WHERE {where} ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return rows

    def ack(self, sink: str, seq: int, lane: str = "bulk") -> None:
        """Advance ``sink``'s cursor for ``lane`` to ``seq`` (never backwards)."""
        with self._tx():
            self._db.execute(
                "INSERT INTO sink_cursors(sink, lane, acked_seq) VALUES (?, ?, ?) "
                "ON CONFLICT(sink, lane) "
                "DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)",
                (sink, lane, seq),
            )

    def cursor(self, sink: str, lane: str = "bulk") -> int:
        row = self._db.execute(
            "SELECT acked_seq FROM sink_cursors WHERE sink = ? AND lane = ?", (sink, lane)
        ).fetchone()
        return int(row[0]) if row else 0

    def dead_letter(self, sink: str, rows: Sequence[Row], reason: str) -> None:
        """Copy rejected ``rows`` into the dead-letter table (they stay out of the sink's way)."""
        with self._tx():
            self._db.executemany(
                "INSERT INTO dead_letters(sink, seq, kind, ts_ns, asset, channel, model_version, "
                "payload, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        sink,
                        r.seq,
                        r.kind,
                        r.ts_ns,
                        r.asset,
                        r.channel,
                        r.model_version,
                        encode_payload(r.payload),
                        reason,
                    )
                    for r in rows
                ],
            )

    def dead_letters(self, sink: str) -> list[tuple[Row, str]]:
        rows = self._db.execute(
            f"SELECT {_COLS}, reason FROM dead_letters WHERE sink = ? ORDER BY id", (sink,)
        ).fetchall()
        return [(_row(t[:7], self.layouts), t[7]) for t in rows]

    # -- inspection --------------------------------------------------------------------------

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(
            self._db.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        )

    def last_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM records").fetchone()
        return int(row[0] or 0)

    def backlog(self, sink: str) -> tuple[int, int | None]:
        """Records ``sink`` has not acknowledged, and the smallest ``ts_ns`` among them."""
        pc, bc = self.cursor(sink, "priority"), self.cursor(sink, "bulk")
        n_p, t_p = self._db.execute(
            f"SELECT count(*), min(ts_ns) FROM records WHERE kind IN ({_PRIO_SQL}) AND seq > ?",
            (pc,),
        ).fetchone()
        (n_all,) = self._db.execute("SELECT count(*) FROM records WHERE seq > ?", (bc,)).fetchone()
        n_pb = self._db.execute(
            f"SELECT count(*) FROM records WHERE kind IN ({_PRIO_SQL}) AND seq > ?", (bc,)
        ).fetchone()[0]
        first = self._db.execute(
            f"SELECT ts_ns FROM records WHERE seq > ? AND kind NOT IN ({_PRIO_SQL}) "
            "ORDER BY seq LIMIT 1",
            (bc,),
        ).fetchone()
        t_b = first[0] if first else None
        oldest = [t for t in (t_p, t_b) if t is not None]
        return int(n_p) + int(n_all) - int(n_pb), (min(oldest) if oldest else None)

    def used_bytes(self) -> int:
        """Bytes of the file in use (pages minus free pages); the WAL is bounded separately."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        return int(pages - free) * int(self.page_size)

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # -- bounds ------------------------------------------------------------------------------

    def _acked_upto(self, lane: str) -> int:
        """The highest ``seq`` of ``lane`` every configured sink of that lane has acknowledged
        (0 if no sink reads it: nothing of it was sent)."""
        sinks = self.sinks if lane == "bulk" else [s for s in self.sinks if s not in self.bulk_only]
        if not sinks:
            return 0
        return min(self.cursor(s, lane) for s in sinks)

    def _limit(self) -> int | None:
        b = self.bounds
        limits = [b.max_bytes - self.wal_bytes] if b.max_bytes is not None else []
        if b.min_free_bytes > 0:
            # the WAL may still grow to its allowance: that space is not free for records
            free = shutil.disk_usage(self.path.parent).free
            wal = self.path.with_name(self.path.name + "-wal")
            wal_now = wal.stat().st_size if wal.exists() else 0
            room = free - max(0, self.wal_bytes - wal_now) - b.min_free_bytes
            (pages,) = self._db.execute("PRAGMA page_count").fetchone()
            # the file may grow into the room; short of room it stops growing (its free pages
            # are reused). Deleting rows never gives the disk any space back, so a disk that
            # another process fills never makes the journal delete more than new rows need.
            limits.append(int(pages) * int(self.page_size) + max(0, room))
        return min(limits) if limits else None

    def _make_room(self, incoming: int) -> None:
        limit = self._limit()
        if limit is None:
            return
        used = self.used_bytes()
        if used + incoming <= limit:
            if self.evicting and used + incoming < limit * self.bounds.low_water:
                log.info("store: below its size limit again; no more drops")
                self.evicting = False
            return
        target = max(0, int(limit * self.bounds.low_water) - incoming)
        prio = ",".join(f"'{k}'" for k in PRIORITY_KINDS)
        steps: list[tuple[str, str, bool]] = [
            # (where, label, counts as a drop)
            (f"kind NOT IN ({prio}) AND seq <= {self._acked_upto('bulk')}", "acked", False),
            (f"kind IN ({prio}) AND seq <= {self._acked_upto('priority')}", "acked", False),
            *((f"kind = '{k}'", k, True) for k in EVICTION_ORDER),
            (f"kind NOT IN ({prio})", "bulk", True),
            (f"kind IN ({prio})", "priority", True),
        ]
        for where, label, is_drop in steps:
            # alerts themselves: only as many as the incoming rows need, not down to low water
            goal = max(0, limit - incoming) if label == "priority" else target
            while used > goal:
                n = self._delete_oldest(where, used - goal, is_drop, label)
                if n == 0:
                    break
                used = self.used_bytes()
            if used <= goal:
                return

    def _delete_oldest(self, where: str, excess: int, is_drop: bool, label: str) -> int:
        avg = self._db.execute(
            f"SELECT avg(length(payload)) FROM (SELECT payload FROM records WHERE {where} "
            "ORDER BY seq LIMIT 64)"
        ).fetchone()[0]
        if avg is None:
            return 0
        n = max(16, int(excess / (avg + ROW_OVERHEAD)) + 1)
        kinds = self._db.execute(
            f"SELECT kind, count(*) FROM (SELECT kind FROM records WHERE {where} "
            "ORDER BY seq LIMIT ?) GROUP BY kind",
            (n,),
        ).fetchall()
        self._db.execute(
            f"DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE {where} "
            "ORDER BY seq LIMIT ?)",
            (n,),
        )
        deleted = int(sum(c for _, c in kinds))
        if is_drop:
            if not self.evicting:
                log.warning(
                    "store: full (limit %d bytes): dropping unsent records, oldest features "
                    "first (counted in drops)",
                    self._limit() or 0,
                )
                self.evicting = True
            for k, c in kinds:
                self._drops_tx[k] += c
            if label == "priority":
                log.error(
                    "store: full of alerts alone: dropping %d alert record(s) (%d before)",
                    deleted,
                    sum(self.drops[k] for k in PRIORITY_KINDS),
                )
        else:
            self._pruned_tx += deleted
        return deleted

    def _evict_by_age(self, now_ns: int) -> None:
        b = self.bounds
        prio = ",".join(f"'{k}'" for k in PRIORITY_KINDS)
        cutoffs: list[int] = []
        for age, lane, where in (
            (b.max_age_s, "bulk", f"kind NOT IN ({prio})"),
            (b.priority_max_age_s, "priority", f"kind IN ({prio})"),
        ):
            if age is None:
                continue
            cutoff = now_ns - int(age * 1e9)
            cutoffs.append(cutoff)
            # the last seq stored by the cutoff: every record up to it is at least that old
            (upto,) = self._db.execute(
                "SELECT max(seq) FROM seq_times WHERE ts_ns <= ?", (cutoff,)
            ).fetchone()
            if upto is None:
                continue
            acked = self._acked_upto(lane)
            dropped = self._db.execute(
                f"SELECT kind, count(*) FROM records WHERE seq <= ? AND {where} AND seq > ? "
                "GROUP BY kind",
                (upto, acked),
            ).fetchall()
            cur = self._db.execute(f"DELETE FROM records WHERE seq <= ? AND {where}", (upto,))
            n_drop = sum(c for _, c in dropped)
            for k, c in dropped:
                self._drops_tx[k] += c
            self._pruned_tx += max(0, cur.rowcount - n_drop)
        if cutoffs:  # marks before the last one any cutoff still needs are of no more use
            self._db.execute(
                "DELETE FROM seq_times WHERE ts_ns < "
                "(SELECT max(ts_ns) FROM seq_times WHERE ts_ns <= ?)",
                (min(cutoffs),),
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")
