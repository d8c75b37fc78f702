"""An ingest-and-forward process built from the gateway's own classes, to be killed by tests.

    python -m tests.uplink.crashproc JOURNAL URL MODE MAX_POINTS_PER_S

``ingest``: generates records (``tests.uplink.records.mixed``) as fast as the store takes them,
continuing after the last one in the journal, while the forwarder sends to URL.
``drain``: only forwards. Prints ``committed SEQ`` after each journal commit, ``acked SEQ``
(the bulk cursor) after each batch the server accepted, and ``drained`` when nothing is left.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import SecretStr

from gateway.core.clock import SystemClock
from gateway.runtime.queues import BoundedQueue
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord
from gateway.store.config import StoreConfig
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter
from gateway.uplink.config import InfluxUplinkConfig
from gateway.uplink.forwarder import InfluxForwarder
from tests.uplink.records import STEP_NS, T0, mixed


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def produce(queue: BoundedQueue[StoreRecord], start: int) -> None:
    i = start
    while True:
        for r in mixed(100, i):
            await queue.put(r)
        i += 100


async def report_commits(writer: StoreWriter) -> None:
    while True:
        writer.flushed.clear()
        await writer.flushed.wait()
        say(f"committed {writer.last_seq}")


async def report_acks(fwd: InfluxForwarder, access: JournalAccess) -> None:
    while True:
        fwd.changed.clear()
        await fwd.changed.wait()
        cur = await access.call(access.journal.cursor, fwd.cfg.name, "bulk")
        say(f"acked {cur}")
        n, _ = await access.call(access.journal.backlog, fwd.cfg.name)
        if n == 0:
            say("drained")


async def main(path: Path, url: str, mode: str, rate: float) -> None:
    journal = Journal(path, sinks=["influxdb"])
    access = JournalAccess(journal)
    last_ts = journal._db.execute("SELECT max(ts_ns) FROM records").fetchone()[0]
    start = 0 if last_ts is None else (last_ts - T0) // STEP_NS + 1
    cfg = InfluxUplinkConfig.model_validate(
        {
            "url": url,
            "org": "plant",
            "bucket": "pdm",
            "token": SecretStr("t"),
            "batch_size": 500,
            "flush_interval_s": 0.1,
            "max_points_per_s": rate,
            "backoff": {"initial_s": 0.05, "max_s": 0.5},
        }
    )
    clock = SystemClock()
    queue: BoundedQueue[StoreRecord] = BoundedQueue("records", 2000)
    writer = StoreWriter(StoreConfig(batch_max=500, flush_interval_s=0.05), access, queue, clock)
    fwd = InfluxForwarder(cfg, access, clock)
    tasks = [
        asyncio.create_task(writer.run()),
        asyncio.create_task(fwd.run()),
        asyncio.create_task(report_commits(writer)),
        asyncio.create_task(report_acks(fwd, access)),
    ]
    if mode == "ingest":
        tasks.append(asyncio.create_task(produce(queue, start)))
    say("started")
    await asyncio.gather(*tasks)  # until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])))
