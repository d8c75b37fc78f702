"""Crash safety: an ingest-and-forward process (the gateway's store writer, journal and forwarder)
is killed with SIGKILL again and again, during heavy ingest and during a drain. After each kill
the journal is intact and holds everything it reported committed; in the end every committed
record is on the server exactly once per key."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.store.journal import Journal
from tests.uplink.records import STEP_NS, T0
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics

REPO = Path(__file__).resolve().parents[2]


class Child:
    """One run of ``tests.uplink.crashproc``; reads its progress lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.committed = 0
        self.acked = 0
        self.drained = False

    @classmethod
    async def start(cls, journal: Path, url: str, mode: str, rate: float) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.uplink.crashproc",
            str(journal),
            url,
            mode,
            str(rate),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        return cls(proc)

    async def until(self, done: Callable[[Child], bool]) -> None:
        """Read progress lines until ``done(self)`` holds (a hang guard of 120 s; on failure the
        child is killed)."""
        assert self.proc.stdout is not None
        try:
            await self._read_until(done)
        except BaseException:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            raise

    async def _read_until(self, done: Callable[[Child], bool]) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(120):
            while not done(self):
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"child exited ({self.proc.returncode})")
                word, _, arg = line.strip().partition(" ")
                if word == "committed":
                    self.committed = int(arg)
                elif word == "acked":
                    self.acked = int(arg)
                elif word == "drained":
                    self.drained = True

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL


def check_journal(path: Path, committed: int) -> tuple[int, int]:
    """The journal after a kill: intact, and every record reported committed is there.
    Returns (records, bulk cursor)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n_upto = db.execute("SELECT count(*) FROM records WHERE seq <= ?", (committed,)).fetchone()
        assert n_upto[0] == committed  # nothing reported committed is missing
    finally:
        db.close()
    j = Journal(path)
    try:
        return j.count(), j.cursor("influxdb", "bulk")
    finally:
        j.close()


async def check_server(vm: VictoriaMetrics, path: Path) -> None:
    """Every record in the journal is on the server once per key, and nothing else is."""
    j = Journal(path)
    try:
        rows = j.read("check", 10**7, "bulk") + j.read("check", 10**7, "priority")
    finally:
        j.close()
    feats = sorted(int(r.payload["features"]["i"]) for r in rows if r.kind == "feature")  # type: ignore[index]
    assert feats == list(range(len(feats)))  # contiguous: the producer resumed where it stopped
    got = await vm.values("feature_i")
    # the server's export can lag what it accepted (seen under heavy load, even after its
    # force_flush): read again until it shows as many values, for at most a minute
    deadline = asyncio.get_running_loop().time() + 60
    while len(got) < len(feats) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)  # polling the server's export, not waiting a fixed time
        got = await vm.values("feature_i")
    assert sorted(int(v) for _, _, v in got) == feats  # each once: no loss, no duplicate
    for labels, ts, v in got:
        assert ts == (T0 + int(v) * STEP_NS) // 1_000_000
        assert labels["asset"] in ("m1", "m2")
    for kind, metric in (
        ("alert", "alert_state_code"),
        ("sensor", "sensor_state_code"),
        ("score", "score_score"),
    ):
        want = sorted(r.ts_ns // 1_000_000 for r in rows if r.kind == kind)
        assert want
        assert sorted(ts for _, ts, _ in await vm.values(metric)) == want


async def test_kill_9_during_ingest_and_during_drain_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite"
    async with victoria_metrics(tmp_path / "vm") as vm:
        # heavy ingest (as fast as the store takes it) while forwarding at a capped rate, so a
        # backlog builds up; killed at a different point each time
        committed = 0
        for k in range(4):
            child = await Child.start(journal, vm.url, "ingest", 4000)
            target = committed + 2000 + 1500 * k
            await child.until(lambda c, t=target: c.committed >= t and c.acked > 0)
            await child.kill()
            committed = child.committed
            n, _ = check_journal(journal, committed)
            assert n >= committed
        # drain the backlog, killed in the middle of it twice
        for _ in range(2):
            n, cursor = check_journal(journal, committed)
            child = await Child.start(journal, vm.url, "drain", 20_000)
            await child.until(lambda c, start=cursor: c.acked >= start + 3000 or c.drained)
            assert not child.drained  # killed during the drain, not after it
            await child.kill()
        child = await Child.start(journal, vm.url, "drain", 50_000)
        await child.until(lambda c: c.drained)
        await child.kill()
        n, cursor = check_journal(journal, committed)
        assert cursor > committed // 2
        await check_server(vm, journal)
