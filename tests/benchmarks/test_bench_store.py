"""Store and uplink benchmarks (``make bench``): ratios against baselines measured in this run.

1. Durable appends (synchronous=FULL, WAL, batches of 500 records with a ~200-byte payload)
   against a bare ``sqlite3.executemany`` of the same encoded rows into a plain table (no index)
   with the same pragmas and batches: ``Journal.append_encoded`` (the same rows; the journal adds
   its index, sequence and bounds check) and ``Journal.append`` (JSON encoding included).
   Goal: >= 0.7x.
2. Drain against live ingest at 256 channels. The live rate is the pipeline's own: the gateway
   (DSP, the shipped LiteRT model, alerts, store) runs 256 vibration channels at 25.6 kHz (the
   end-to-end benchmark's load) on a simulated healthy machine's signal, fed as fast as it takes
   it, and the live rate is the records it stored per second of signal in the steady state (one
   feature record and one score per 80 ms hop and channel). Those stored records, repeated at
   later times (distinct keys), make the backlog. The forwarder, with the forwarding selector as
   the gateway installs it, sends the backlog to a real server (VictoriaMetrics on loopback,
   gzip, batches of 5000, no rate cap); each run is a new sink sending everything again (re-sent
   points overwrite). The rate is taken after the first two batches (warm-up: connection, caches)
   to the last; the gateway process's CPU time over the same span is reported as CPU per record
   and as a fraction of one core (the wall rate also depends on the server, which shares the
   machine). Goal: >= 20x (median of three runs; the range is printed).
3. Catch-up, measured: the backlog above (an outage of ``backlog / live rate`` seconds) is sent
   while live ingest goes on at the live rate (appended every 100 ms); caught up is when a sent
   batch ends less than a batch (5000 records, under a second of ingest) from the journal's
   head. The one-hour figure scales that time linearly (each batch is one range read, so the
   drain rate does not depend on the backlog's size). A real one-hour backlog at this rate is
   about 23 M records (some 14 GB of journal): with the example ``max_bytes`` of 1 GiB most
   features would be evicted before they are sent.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from gateway.core.clock import SystemClock
from gateway.core.records import SampleBlock
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.selection import DetailSelector
from gateway.runtime.pipeline import Pipeline
from gateway.store.access import JournalAccess
from gateway.store.journal import Journal, Row, encode_rows
from gateway.uplink.config import InfluxUplinkConfig
from gateway.uplink.forwarder import InfluxForwarder
from simulators.machine import Machine, MachineSpec
from tests.benchmarks.conftest import Bench
from tests.benchmarks.e2e_gateway import FS, config
from tests.benchmarks.timing import best_of
from tests.uplink.records import T0
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics

BATCH = 500
N_APPEND = 20_000
CHANNELS = 256
SIGNAL_S = 4.0  # signal fed to the pipeline to measure the live rate
STEADY_S = (1.0, 3.0)  # records timed in this span of the signal give the rate
REPEATS = 8  # the pipeline's records, repeated at later times, make the backlog
UPLINK_BATCH = 5000
WARMUP_BATCHES = 2


def rows_200b(n: int) -> list[Row]:
    """Records whose JSON payload is about 200 bytes."""
    return [
        Row(
            "feature",
            T0 + i,
            "pump-01",
            f"ch{i % 256:03d}",
            {"features": {f"f{k}": 0.1234567 * (k + 1 + i % 10) for k in range(9)}, "q": "good"},
        )
        for i in range(n)
    ]


def test_bench_durable_appends_vs_bare_executemany(tmp_path: Path, bench: Bench) -> None:
    rows = rows_200b(N_APPEND)
    size = np.mean([len(json.dumps(r.payload, separators=(",", ":"))) for r in rows[:100]])
    assert 180 <= size <= 230
    encoded = encode_rows(rows)
    runs = iter(range(1000))

    def ours() -> None:
        j = Journal(tmp_path / f"ours{next(runs)}.sqlite", "FULL")
        for i in range(0, N_APPEND, BATCH):
            j.append(rows[i : i + BATCH])
        assert j.count() == N_APPEND
        j.close()

    def ours_encoded() -> None:
        j = Journal(tmp_path / f"enc{next(runs)}.sqlite", "FULL")
        for i in range(0, N_APPEND, BATCH):
            j.append_encoded(encoded[i : i + BATCH])
        assert j.count() == N_APPEND
        j.close()

    def baseline() -> None:
        db = sqlite3.connect(tmp_path / f"bare{next(runs)}.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE r (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, ts_ns INTEGER, "
            "asset TEXT, channel TEXT, model_version TEXT, payload TEXT)"
        )
        for i in range(0, N_APPEND, BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO r(kind, ts_ns, asset, channel, model_version, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                encoded[i : i + BATCH],
            )
            db.execute("COMMIT")
        db.close()

    # interleaved best of 7: fsync times vary with the other load on the disk, and this way each
    # contender sees the same conditions
    best = {f: float("inf") for f in (ours, ours_encoded, baseline)}
    for _ in range(7):
        for f in best:
            best[f] = min(best[f], best_of(f, 1))
    t_ours, t_enc, t_base = best[ours], best[ours_encoded], best[baseline]
    print(
        f"\n[bench] durable appends (FULL, batches of {BATCH}, ~{size:.0f}-byte payloads), "
        f"vs bare executemany of the same encoded rows ({N_APPEND / t_base:,.0f}/s):"
        f"\n[bench]   rows already encoded (Journal.append_encoded): {N_APPEND / t_enc:,.0f}/s "
        f"-> ratio {t_base / t_enc:.2f}x (goal >= 0.7x)"
        f"\n[bench]   with JSON encoding of the payloads (Journal.append): "
        f"{N_APPEND / t_ours:,.0f}/s -> ratio {t_base / t_ours:.2f}x"
    )
    bare = "bare sqlite3 executemany"
    bench.record(
        "durable appends, encoded rows",
        N_APPEND / t_enc,
        "rows/s",
        baseline=N_APPEND / t_base,
        baseline_name=bare,
        goal=">= 0.7x",
    )
    bench.record(
        "durable appends, with JSON encoding",
        N_APPEND / t_ours,
        "rows/s",
        baseline=N_APPEND / t_base,
        baseline_name=bare,
    )


async def pipeline_records(tmp: Path) -> tuple[list[Row], float]:
    """The records the gateway stores for ``CHANNELS`` channels fed ``SIGNAL_S`` of signal, and
    its live rate (records per second of signal, steady state)."""
    spec = MachineSpec(vibration_channels=1, vibration_rate_hz=FS, acoustic_rate_hz=0.0)
    snap = Machine(spec, seed=1).advance(SIGNAL_S)
    signal = next(b.samples for b in snap.blocks if b.channel == "vib0")
    block = 2560
    pipe = Pipeline(config(CHANNELS, tmp))
    t0 = time.time_ns()  # (records older than the store's max_age_s would be evicted)
    await pipe.start()
    assert pipe.journal is not None
    path = pipe.journal.path
    for k in range(int(SIGNAL_S * FS) // block):
        ts = t0 + round(k * block / FS * 1e9)
        seg = signal[k * block : (k + 1) * block]
        for i in range(CHANNELS):
            await pipe.samples.put(SampleBlock(f"c{i}", ts, ts, FS, seg.copy(), k * block))
    assert await pipe.stop()
    j = Journal(path)
    rows = j.read("bench", 10**9, "bulk") + j.read("bench", 10**9, "priority")
    j.close()
    lo, hi = (t0 + int(t * 1e9) for t in STEADY_S)
    steady = sum(lo <= r.ts_ns < hi for r in rows)
    assert {r.kind for r in rows} >= {"feature", "score"}
    return rows, steady / (STEADY_S[1] - STEADY_S[0])


def repeated(rows: list[Row], k: int) -> list[Row]:
    """``rows`` shifted ``k`` signal lengths later (new keys), as new records."""
    shift = k * int(SIGNAL_S * 1e9)
    return [
        Row(r.kind, r.ts_ns + shift, r.asset, r.channel, r.payload, r.model_version) for r in rows
    ]


class TimedForwarder(InfluxForwarder):
    """Marks (wall time, process CPU time, records sent) after each batch; ``caught_up`` is set
    once a batch ends less than a batch from ``head`` (the journal's last ``seq``, kept by the
    live ingest)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.marks: list[tuple[float, float, int]] = []
        self.head = 0
        self.caught_up = asyncio.Event()

    async def _deliver(self, *args: Any) -> None:
        await super()._deliver(*args)
        self.marks.append((time.perf_counter(), time.process_time(), self.sent))
        if self.head - self._bulk_cursor < self.cfg.batch_size:
            self.caught_up.set()


def forwarder(vm: VictoriaMetrics, access: JournalAccess, name: str) -> TimedForwarder:
    cfg = InfluxUplinkConfig(
        name=name,
        url=vm.url,  # type: ignore[arg-type]
        org="plant",
        bucket="pdm",
        token=SecretStr("t"),
        batch_size=UPLINK_BATCH,
        max_points_per_s=1e9,
    )
    fwd = TimedForwarder(cfg, access, SystemClock())
    fwd.selector = DetailSelector(ForwardingConfig())  # as the gateway installs it
    return fwd


def rate_after_warmup(fwd: TimedForwarder) -> tuple[float, float, float]:
    """(records/s, CPU us per record, CPU fraction of one core) from the end of the warm-up
    batches to the last batch."""
    (w0, c0, s0), (w1, c1, s1) = fwd.marks[WARMUP_BATCHES - 1], fwd.marks[-1]
    n = s1 - s0
    return n / (w1 - w0), (c1 - c0) / n * 1e6, (c1 - c0) / (w1 - w0)


async def live_ingest(
    access: JournalAccess, rows: list[Row], rate: float, k0: int, fwd: TimedForwarder
) -> None:
    """Append ``rows`` repeated from repetition ``k0`` on, at ``rate`` records/s, every 100 ms
    (keeping ``fwd.head``)."""
    start, k, i, sent = time.perf_counter(), k0, 0, 0
    while True:
        due = int((time.perf_counter() - start) * rate) - sent
        chunk: list[Row] = []
        while len(chunk) < due:
            take = rows[i : i + due - len(chunk)]
            chunk += repeated(take, k)
            i += len(take)
            if i >= len(rows):
                k, i = k + 1, 0
        if chunk:
            fwd.head = await access.call(access.journal.append, chunk)
            access.notify_appended()
            sent += len(chunk)
        await asyncio.sleep(0.1)  # (a rate generator: the store appends about this often)


async def test_bench_drain_rate_vs_live_ingest_at_256_channels(
    tmp_path: Path, bench: Bench
) -> None:
    live, live_rate = await pipeline_records(tmp_path / "gw")
    j = Journal(tmp_path / "backlog.sqlite", "NORMAL")
    for k in range(REPEATS):
        rows = repeated(live, k)
        for i in range(0, len(rows), 5000):
            j.append(rows[i : i + 5000])
    n = j.count()
    access = JournalAccess(j)
    rates, cpus, fracs = [], [], []
    async with victoria_metrics(tmp_path / "vm") as vm:
        for run in range(3):  # each run is a new sink, sending everything again
            fwd = forwarder(vm, access, f"run{run}")
            task = asyncio.create_task(fwd.run())
            await asyncio.wait_for(fwd.drained(), 600)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert fwd.sent == n
            rate, cpu_us, frac = rate_after_warmup(fwd)
            print(f"[bench] run {run}: {rate:,.0f} records/s, {cpu_us:.1f} us CPU/record")
            rates.append(rate)
            cpus.append(cpu_us)
            fracs.append(frac)
        scores = sum(r.kind == "score" for r in live) * REPEATS
        assert len(await vm.values("score_score")) == scores  # re-sent points overwrote
        # catch-up with live ingest going on
        fwd = forwarder(vm, access, "catch-up")
        fwd.head = n
        t0 = time.perf_counter()
        ingest = asyncio.create_task(live_ingest(access, live, live_rate, REPEATS, fwd))
        task = asyncio.create_task(fwd.run())
        await asyncio.wait_for(fwd.caught_up.wait(), 600)
        catch_up_s = time.perf_counter() - t0
        for t in (ingest, task):
            t.cancel()
        await asyncio.gather(ingest, task, return_exceptions=True)
        assert fwd.sent >= n
    access.close()
    drain = statistics.median(rates)
    cpu_us, frac = statistics.median(cpus), statistics.median(fracs)
    outage_s = n / live_rate
    one_hour_s = catch_up_s * 3600 / outage_s
    print(
        f"\n[bench] live ingest at {CHANNELS} channels (the pipeline's stored records per second "
        f"of signal): {live_rate:,.0f}/s"
        f"\n[bench] drain to VictoriaMetrics of {n:,} records (gzip, batches of {UPLINK_BATCH}, "
        f"server on the same host): median {drain:,.0f} records/s "
        f"(runs {min(rates):,.0f}..{max(rates):,.0f}) -> ratio {drain / live_rate:.1f}x "
        f"({min(rates) / live_rate:.1f}..{max(rates) / live_rate:.1f}x; goal >= 20x); "
        f"gateway CPU {cpu_us:.1f} us/record, {frac:.2f} of one core (one core of it drains "
        f"{1e6 / cpu_us:,.0f}/s: {1e6 / cpu_us / live_rate:.1f}x)"
        f"\n[bench] catch-up after a {outage_s:.0f} s outage with live ingest going on: "
        f"{catch_up_s:.1f} s -> after a one-hour outage (scaled): {one_hour_s / 60:.1f} min"
    )
    base = f"live ingest, {CHANNELS} ch"
    bench.record(
        "drain to VictoriaMetrics", drain, "records/s", baseline=live_rate, baseline_name=base,
        goal=">= 20x",
    )  # fmt: skip
    bench.record("drain, gateway CPU per record", cpu_us, "us")
    bench.record(
        "drain per core of gateway CPU", 1e6 / cpu_us, "records/s", baseline=live_rate,
        baseline_name=base,
    )  # fmt: skip
    bench.record(f"catch-up after a {outage_s:.0f} s outage (measured)", catch_up_s, "s")
    bench.record("catch-up after a one-hour outage (scaled)", one_hour_s / 60, "min")
