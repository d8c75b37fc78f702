"""The SQLite journal: WAL, sequence numbers, per-sink cursors, survival across reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.core.errors import ResourceUnavailableError
from gateway.store.journal import Journal, Row


def rows(n: int, start: int = 0) -> list[Row]:
    return [
        Row("feature", 1000 + i, "a", "c", {"features": {"rms": float(i)}})
        for i in range(start, start + n)
    ]


def test_append_read_ack_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    assert j.append(rows(5)) == 5
    assert [r.seq for r in j.read("influx", 3)] == [1, 2, 3]
    j.ack("influx", 3)
    j.ack("influx", 2)  # never moves back
    j.close()
    j2 = Journal(path)
    assert j2.cursor("influx") == 3
    assert [r.payload["features"] for r in j2.read("influx", 10)] == [{"rms": 3.0}, {"rms": 4.0}]
    assert j2.read("other", 10)[0].seq == 1  # each sink has its own cursor
    assert j2.append(rows(1, 5)) == 6
    j2.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_batches_of_any_size_are_stored_whole_and_in_order(tmp_path: Path) -> None:
    # sizes across the multi-row statements' chunks (64, 16, 4, 1) and their remainders
    j = Journal(tmp_path / "j.sqlite")
    last, start = 0, 0
    for n in (1, 3, 4, 5, 16, 21, 64, 85, 150, 300):
        last = j.append(rows(n, start))
        start += n
        assert last == start  # the last seq of the batch
    got = j.read("influx", 10_000)
    assert [r.seq for r in got] == list(range(1, start + 1))
    assert [r.ts_ns for r in got] == [1000 + i for i in range(start)]
    assert [r.payload["features"]["rms"] for r in got] == [float(i) for i in range(start)]
    j.close()


def test_unopenable_path_is_a_resource_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResourceUnavailableError):
        Journal(blocker / "j.sqlite")
