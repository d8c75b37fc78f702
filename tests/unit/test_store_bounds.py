"""Journal bounds (size, age), eviction order, drop counters, lanes, and a full disk."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.core.clock import FakeClock
from gateway.runtime.queues import BoundedQueue
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord, record_row
from gateway.store.config import StoreConfig
from gateway.store.journal import Bounds, Journal, Row
from gateway.store.writer import StoreWriter
from tests.uplink.records import T0, alert, frame, score

MB = 1 << 20


def disk_bytes(path: Path) -> int:
    """The journal's footprint on disk: the file and its WAL."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_lanes_and_codecs_round_trip(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    recs: list[StoreRecord] = [frame(0), score(1), alert(2), alert(3, "sensor"), frame(4)]
    j.append([record_row(r) for r in recs])
    prio = j.read("s", 10, "priority")
    bulk = j.read("s", 10, "bulk")
    assert [(r.kind, r.seq) for r in prio] == [("alert", 3), ("sensor", 4)]
    assert [(r.kind, r.seq) for r in bulk] == [("feature", 1), ("score", 2), ("feature", 5)]
    assert prio[0].model_version == "1.2.0"
    assert prio[0].payload["state"] == "raised"
    assert prio[1].channel == "m2_vib"
    assert bulk[1].payload == {
        "model_id": "iforest",
        "score": 1.0,
        "threshold": 0.5,
        "shadow": False,
    }
    j.ack("s", 4, "priority")  # alerts sent ahead of the bulk backlog
    assert j.backlog("s") == (3, T0)
    j.ack("s", 5, "bulk")
    assert j.backlog("s") == (0, None)
    j.close()
    # cursors are durable and per sink: another sink still sees everything
    j2 = Journal(tmp_path / "j.sqlite")
    assert j2.cursor("s", "priority") == 4
    assert j2.backlog("s") == (0, None)
    assert j2.backlog("other")[0] == 5
    j2.close()


def test_long_outage_stays_under_the_byte_limit_features_first_alerts_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    limit = 1 * MB
    j = Journal(path, bounds=Bounds(max_bytes=limit), sinks=["influx"])  # nothing acked: outage
    n_alerts = n_scores = 0
    peak = 0
    for b in range(150):  # ~15k records of ~250 bytes: about 4x the budget
        batch: list[StoreRecord] = []
        for i in range(b * 100, b * 100 + 100):
            batch.append(frame(i))
            if i % 50 == 0:
                batch.append(score(i))
                n_scores += 1
            if i % 100 == 0:
                batch.append(alert(i))
                n_alerts += 1
        j.append([record_row(r) for r in batch])
        peak = max(peak, disk_bytes(path))
    assert peak <= limit
    assert j.drops["feature"] > 10_000
    assert j.drops["score"] == 0  # features went first
    assert j.drops["alert"] == 0
    assert j.count("alert") == n_alerts  # every alert kept
    assert j.count("score") == n_scores
    # what is left of the features is the newest
    feats = j.read("check", 100_000)
    seqs = [r.seq for r in feats if r.kind == "feature"]
    assert seqs == sorted(seqs)
    assert seqs[-1] == j.last_seq() or j.read("check", 100_000)[-1].kind != "feature"
    assert j.integrity_check() == "ok"
    j.close()


def test_acknowledged_records_go_before_any_drop(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", bounds=Bounds(max_bytes=512 * 1024), sinks=["influx"])
    j.append([record_row(frame(i)) for i in range(1000)])
    j.ack("influx", j.last_seq(), "bulk")
    for b in range(1, 40):
        j.append([record_row(frame(i)) for i in range(b * 100 + 900, b * 100 + 1000)])
        # an unsent record is dropped only once every sent one is gone
        assert j.drops["feature"] == 0 or j.pruned == 1000
    assert j.pruned == 1000
    assert j.drops["feature"] > 0
    assert j.read("check", 1)[0].seq > 1000
    j.close()


def test_alerts_are_dropped_only_when_nothing_else_is_left_and_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "j.sqlite", bounds=Bounds(max_bytes=256 * 1024), sinks=["influx"])
    j.append([record_row(frame(i)) for i in range(100)] + [record_row(score(100))])
    for b in range(20):
        j.append([record_row(alert(i)) for i in range(b * 100, b * 100 + 100)])
    assert j.count("feature") == 0
    assert j.count("score") == 0
    assert j.drops["feature"] == 100
    assert j.drops["score"] == 1
    assert j.drops["alert"] > 0
    assert j.drops["alert"] + j.count("alert") == 2000
    assert any(r.levelno == logging.ERROR and "alert" in r.getMessage() for r in caplog.records)
    j.close()


def test_records_past_the_maximum_age_are_dropped_and_counted(tmp_path: Path) -> None:
    j = Journal(
        tmp_path / "j.sqlite", bounds=Bounds(max_age_s=60, priority_max_age_s=3600), sinks=["s"]
    )
    old = [Row("feature", T0 + i, "a", "c", {"i": i}) for i in range(10)]
    old_alert = Row("alert", T0, "a", "", {"alert_id": "x"})
    j.append([*old, old_alert], now_ns=T0)
    j.ack("s", 5, "bulk")  # five of them were sent
    j.append([Row("feature", T0 + 120 * 10**9, "a", "c", {"i": 99})], now_ns=T0 + 120 * 10**9)
    assert j.count("feature") == 1
    assert j.drops["feature"] == 5  # the unsent ones
    assert j.pruned == 5
    assert j.count("alert") == 1  # alerts have their own, longer age
    j.close()


async def test_full_disk_keeps_the_batch_retries_and_logs_once_per_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.store")
    j = Journal(tmp_path / "j.sqlite")
    j.append([record_row(frame(i)) for i in range(10)])
    (pages,) = j._db.execute("PRAGMA page_count").fetchone()
    j.limit_pages(pages)  # the disk is full from now on
    with pytest.raises(sqlite3.OperationalError, match="full"):
        j.append([record_row(frame(i)) for i in range(10, 500)])
    clock = FakeClock()
    access = JournalAccess(j)
    q: BoundedQueue[StoreRecord] = BoundedQueue("records", 10_000)
    writer = StoreWriter(StoreConfig(batch_max=1000, flush_interval_s=0.01), access, q, clock)
    task = asyncio.create_task(writer.run())
    for i in range(10, 510):
        await q.put(frame(i))
    for k in range(5):  # failed attempts, each followed by a retry pause
        await clock.wait_for_sleepers(1)
        if k < 4:
            clock.advance(1.0)
    assert writer.status()["state"] == "failing"
    assert writer.write_errors == 5
    assert writer.pending == 500  # kept, not dropped
    await access.call(j.limit_pages, None)  # space again
    clock.advance(1.0)
    await q.close()
    await task
    assert writer.status()["state"] == "ok"
    assert j.count("feature") == 510
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("store write failed" in m for m in msgs) == 1
    assert sum("store writes work again" in m for m in msgs) == 1
    writer.close()


def test_a_disk_filled_by_another_process_stops_growth_without_wiping_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free space far below ``min_free_bytes`` (more than the file's size): deleting rows gives
    the disk nothing back, so the journal stops growing and frees only what new rows need,
    features first; the unsent alerts stay."""
    free = [10 << 30]
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        "gateway.store.journal.shutil.disk_usage",
        lambda p: usage._replace(free=free[0]),
    )
    j = Journal(tmp_path / "j.sqlite", bounds=Bounds(min_free_bytes=100 * MB), sinks=["influx"])
    j.append([record_row(alert(i)) for i in range(50)])  # the uplink is down: all unsent
    j.append([record_row(frame(i)) for i in range(100, 400)])
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    free[0] = 40 * MB  # another process filled the disk
    for k in range(3):
        j.append([record_row(alert(1000 + k))])
    assert j.count("alert") == 53
    assert j.drops["alert"] == 0
    assert 0 < j.drops["feature"] < 300  # only what the new rows needed
    assert j._db.execute("PRAGMA page_count").fetchone()[0] == pages  # it stopped growing
    j.close()


def test_delivered_alerts_are_pruned_though_escalation_reads_no_alerts(tmp_path: Path) -> None:
    """A sink that reads the bulk lane only (escalation) does not hold back the alerts the
    uplink delivered: they go before any unsent feature is dropped."""
    j = Journal(tmp_path / "j.sqlite", bounds=Bounds(max_bytes=512 * 1024), sinks=["influx", "esc"])
    j.bulk_only = frozenset({"esc"})
    j.append([record_row(alert(i)) for i in range(1000)])
    j.ack("influx", j.last_seq(), "priority")  # delivered
    for b in range(40):
        j.append([record_row(frame(i)) for i in range(b * 100, b * 100 + 100)])
        assert j.drops["feature"] == 0 or j.count("alert") == 0
    assert j.pruned == 1000
    assert j.drops["alert"] == 0
    j.close()


def test_age_is_counted_from_when_the_gateway_stored_a_record_not_its_source_time(
    tmp_path: Path,
) -> None:
    """A device whose clock is wrong (reset to 2000) sends records with old source times: they
    stay until they were *stored* ``max_age`` ago."""
    j = Journal(
        tmp_path / "j.sqlite", bounds=Bounds(max_age_s=60, priority_max_age_s=3600), sinks=["s"]
    )
    y2000 = 946_684_800 * 10**9
    j.append(
        [Row("alert", y2000, "a", "", {"alert_id": "x"}), Row("feature", y2000, "a", "c", {})],
        now_ns=T0,
    )
    j.append([Row("feature", T0 + 11 * 10**9, "a", "c", {})], now_ns=T0 + 11 * 10**9)
    assert j.count("alert") == 1
    assert j.count("feature") == 2
    assert not j.drops
    j.append([Row("feature", T0 + 70 * 10**9, "a", "c", {})], now_ns=T0 + 70 * 10**9)
    assert j.count("feature") == 2  # the one stored 70 s ago went (and counted: unsent)
    assert j.drops == {"feature": 1}
    assert j.count("alert") == 1  # alerts have their own, longer age
    j.append([], now_ns=T0 + 3700 * 10**9)  # (an empty batch writes nothing)
    j.append([Row("feature", T0, "a", "c", {})], now_ns=T0 + 3700 * 10**9)
    assert j.count("alert") == 0
    assert j.drops["alert"] == 1
    j.close()
