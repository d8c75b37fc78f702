"""The store writer commits a batch holding an alert at once, with the records pending before
it; other records wait for the batch size or the flush interval. Commit observers see each
committed batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.core.clock import FakeClock
from gateway.core.records import ActionRecord, AlertState
from gateway.runtime.queues import BoundedQueue
from gateway.store import codec
from gateway.store import writer as writer_module
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord
from gateway.store.config import StoreConfig
from gateway.store.journal import EncodedRow, Journal, Row
from gateway.store.writer import StoreWriter
from tests.uplink.records import alert, frame, score


async def test_alert_is_committed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    access = JournalAccess(j)
    q: BoundedQueue[StoreRecord] = BoundedQueue("records", 1000)
    # an interval no test waits for: only the alert can make the writer commit
    writer = StoreWriter(StoreConfig(batch_max=1000, flush_interval_s=60), access, q, FakeClock())
    commits: list[list[str]] = []
    given: list[EncodedRow] = []
    done = asyncio.Event()

    def seen(rows: Sequence[EncodedRow]) -> None:
        commits.append([r.kind for r in rows])
        given.extend(rows)
        done.set()

    writer.on_commit.append(seen)
    task = asyncio.create_task(writer.run())
    await q.put_many([frame(0), score(1), alert(2)])  # far from batch_max, far from the interval
    await asyncio.wait_for(done.wait(), 60)  # a hang guard: without the rule it never commits
    assert commits == [["feature", "score", "alert"]]  # with what came before, in order
    assert j.count("alert") == 1
    assert j.count("feature") == 1
    # observers get the rows as stored, payload JSON included
    stored = j.read_stored("t", 10, "bulk") + j.read_stored("t", 10, "priority")
    assert [(t[1], t[2], t[3], t[4], t[5], t[6].decode()) for t in stored] == [
        tuple(r) for r in given
    ]
    await q.close()
    await task
    assert commits == [["feature", "score", "alert"]]  # nothing left for the close
    writer.close()


async def test_records_are_encoded_as_taken_and_stored_as_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are encoded on the event loop as they are taken (a commit only inserts), and
    stored exactly as ``encode_records`` encodes them (derived rows with them)."""
    threads: list[str] = []

    def encode(batch: Sequence[StoreRecord | Row]) -> list[EncodedRow]:
        threads.append(threading.current_thread().name)
        return codec.encode_records(batch)

    monkeypatch.setattr(writer_module, "encode_records", encode)
    j = Journal(tmp_path / "j.sqlite")
    access = JournalAccess(j)
    q: BoundedQueue[StoreRecord] = BoundedQueue("records", 1000)
    writer = StoreWriter(StoreConfig(batch_max=1000, flush_interval_s=60), access, q, FakeClock())

    class Deriver:
        async def derive(self, records: Sequence[StoreRecord]) -> list[Row]:
            taken.set()  # (the writer goes on until it waits for the next batch)
            return [Row("summary", 7, "m1", "", {"frames": len(records)})]

        def flush(self) -> list[Row]:
            return []

    writer.deriver = Deriver()
    taken = asyncio.Event()
    recs: list[StoreRecord] = []
    for part in range(3):  # taken in three batches, committed together
        more = [frame(part * 1000 + i) for i in range(50)]
        recs += more
        await q.put_many(more)
        if part == 0:
            task = asyncio.create_task(writer.run())
        await asyncio.wait_for(taken.wait(), 60)  # hang guard only
        taken.clear()
        assert writer.pending == len(recs) + part + 1  # (and a summary per batch)
    recs += [score(1), alert(2)]
    await q.put_many(recs[-2:])
    await q.close()
    await task
    assert threads
    assert set(threads) == {threading.current_thread().name}
    n = 50
    summaries = [Row("summary", 7, "m1", "", {"frames": k}) for k in (n, n, n, 2)]
    order: list[StoreRecord | Row] = []
    for k, summary in enumerate(summaries):  # each batch taken, then its summary
        order += [*recs[k * n : (k + 1) * n if k < 3 else None], summary]
    want = codec.encode_records(order)
    stored = j.read_stored("t", 1000, "bulk") + j.read_stored("t", 1000, "priority")
    writer.close()
    stored.sort()  # (by seq: the order committed)
    assert [(s[1], s[2], s[6].decode()) for s in stored] == [
        (w.kind, w.ts_ns, w.payload) for w in want
    ]


async def test_a_record_that_cannot_be_encoded_is_left_out_and_the_others_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "j.sqlite")
    access = JournalAccess(j)
    q: BoundedQueue[StoreRecord] = BoundedQueue("records", 1000)
    writer = StoreWriter(StoreConfig(batch_max=1000, flush_interval_s=60), access, q, FakeClock())
    bad = ActionRecord("a1", "m1", "r", AlertState.RAISED, 5, "dev:1", object(), "written")  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    await q.put_many([frame(0), bad, score(1)])
    await q.close()
    await task
    assert j.count("feature") == 1
    assert j.count("score") == 1
    assert j.count("action") == 0
    assert writer.status()["encode_errors"] == 1
    assert writer.written == 2
    writer.close()
    assert "ActionRecord cannot be encoded" in caplog.text
