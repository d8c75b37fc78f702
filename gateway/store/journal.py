"""The durable journal: an append-only SQLite file (WAL) of records with per-sink cursors.

Contract: a record is *accepted* once ``append`` returns; from then on it survives a crash or a
power cut (``synchronous=FULL``). Each record gets a strictly increasing ``seq``. Sinks read in
``seq`` order after their acknowledged cursor and advance it with ``ack``; the cursor is durable
too. The journal is used from one thread at a time (the store's executor thread owns it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import ResourceUnavailableError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    asset TEXT NOT NULL,
    channel TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    acked_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    """One stored record. ``payload`` is a JSON object."""

    kind: str
    ts_ns: int
    asset: str
    channel: str
    payload: dict[str, object]
    model_version: str = ""
    seq: int = 0


class Journal:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ResourceUnavailableError(f"cannot open store {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def append(self, rows: Iterable[Row]) -> int:
        """Write ``rows`` in one transaction; returns the last ``seq`` assigned (0 if none)."""
        data = [
            (
                r.kind,
                r.ts_ns,
                r.asset,
                r.channel,
                r.model_version,
                json.dumps(r.payload, separators=(",", ":"), allow_nan=True),
            )
            for r in rows
        ]
        if not data:
            return 0
        with self._tx():
            self._db.executemany(
                "INSERT INTO records(kind, ts_ns, asset, channel, model_version, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                data,
            )
            (last,) = self._db.execute("SELECT max(seq) FROM records").fetchone()
        return int(last)

    def read(self, sink: str, limit: int) -> list[Row]:
        """Up to ``limit`` records after ``sink``'s acknowledged cursor, in ``seq`` order."""
        cur = self.cursor(sink)
        rows = self._db.execute(
            "SELECT seq, kind, ts_ns, asset, channel, model_version, payload FROM records "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (cur, limit),
        ).fetchall()
        return [
            Row(kind=k, ts_ns=t, asset=a, channel=c, model_version=m, payload=json.loads(p), seq=s)
            for s, k, t, a, c, m, p in rows
        ]

    def ack(self, sink: str, seq: int) -> None:
        """Advance ``sink``'s cursor to ``seq`` (never backwards)."""
        with self._tx():
            self._db.execute(
                "INSERT INTO cursors(sink, acked_seq) VALUES (?, ?) ON CONFLICT(sink) "
                "DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)",
                (sink, seq),
            )

    def cursor(self, sink: str) -> int:
        row = self._db.execute("SELECT acked_seq FROM cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(
            self._db.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        )

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
