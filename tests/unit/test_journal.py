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


def test_unopenable_path_is_a_resource_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResourceUnavailableError):
        Journal(blocker / "j.sqlite")
