"""End-to-end figures (``make bench``): 64 and 256 vibration channels at 25.6 kHz fed in real time
through DSP, the shipped LiteRT model, the alert engine and the SQLite store, in a gateway process
of its own (``e2e_gateway.py``, which says what is fed and measured). Reported: CPU as a fraction
of one core, p50/p99 latency from the arrival of the block that completes a window to the alert on
it committed in the journal (and to its score's evaluation by the alert stage), the process's
steady-state RSS, and the CPU of its threads (the event loop, the DSP worker, which scores each
batch with the model too, and the store's). The signal is a simulated healthy machine's (collectors
are measured in their own benchmarks).

Baseline for the CPU at 256 channels: the same run with ``dsp.batch_wait_ms = 0`` (the DSP stage
takes each device's delivery as a batch of its own as soon as it arrives; by default it holds a
delivery for the next one when they come less than 8 ms apart, as at 256 channels, where one comes
every 6.25 ms: half as many batches, each window delayed by up to that wait). Its latency is
reported too: the price of the saving.

Baseline for the latency, measured in the same run on the same file system: a bare ``sqlite3``
commit (WAL, ``synchronous=FULL``, one ~300-byte row) every 40 ms, as often as the benchmark's
alerts come: the fsync alone that every committed alert waits for, with no gateway around it."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from simulators.machine import Machine, MachineSpec
from tests.benchmarks.conftest import Bench
from tests.benchmarks.e2e_gateway import FS

ROOT = Path(__file__).resolve().parents[2]
#: threads whose CPU is reported: (name, label)
THREADS = (("MainThread", "event loop"), ("dsp", "DSP worker"), ("store", "store"))
RUN_S = 30.0  #: seconds of signal per run: ~430 alerts after the warm-up, so p99 is not one sample


def signal(path: Path) -> Path:
    spec = MachineSpec(vibration_channels=1, vibration_rate_hz=FS, acoustic_rate_hz=0.0)
    snap = Machine(spec, seed=1).advance(4.0)
    base = next(b.samples for b in snap.blocks if b.channel == "vib0")[: int(4 * FS)]
    np.save(path, np.asarray(base, dtype=np.float32))
    return path


def run(
    channels: int, sig: Path, tmp: Path, batch_wait_ms: float | None = None
) -> dict[str, object]:
    tag = f"{channels}" if batch_wait_ms is None else f"{channels}-wait{batch_wait_ms:g}"
    out = tmp / f"result-{tag}.json"
    wait = [] if batch_wait_ms is None else ["--batch-wait-ms", str(batch_wait_ms)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.e2e_gateway",
            "--channels",
            str(channels),
            "--signal",
            str(sig),
            "--state",
            str(tmp / f"state-{tag}"),
            "--out",
            str(out),
            "--seconds",
            str(RUN_S),
            *wait,
        ],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    result: dict[str, object] = json.loads(out.read_text())
    return result


def bare_commits(path: Path, n: int = 400, period_s: float = 0.04) -> list[float]:
    """Seconds taken by ``n`` bare durable commits of one row, one every ``period_s``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, ts INTEGER, payload TEXT)")
    payload = json.dumps({"alert_id": "a" * 32, "rule": "level0", "message": "x" * 180})
    took: list[float] = []
    next_at = time.perf_counter()
    for i in range(n):
        next_at += period_s
        t0 = time.perf_counter()
        db.execute("INSERT INTO t (ts, payload) VALUES (?, ?)", (i, payload))
        took.append(time.perf_counter() - t0)
        time.sleep(max(0.0, next_at - time.perf_counter()))  # paced like the alerts
    db.close()
    return took


def pct(xs: object, q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64) * 1e3, q))


def test_bench_end_to_end_channels(bench: Bench, tmp_path: Path) -> None:
    sig = signal(tmp_path / "signal.npy")
    unbatched: dict[int, float] = {}
    # 256 channels also with ``dsp.batch_wait_ms = 0`` (first): the baseline of the CPU at 256
    # (at 64 channels devices deliver 25 ms apart, so the default wait never engages)
    for channels, wait in ((64, None), (256, 0.0), (256, None)):
        r = run(channels, sig, tmp_path, wait)
        frac, rss = float(r["cpu_fraction"]), int(r["rss_bytes"])  # type: ignore[arg-type]
        threads = r["thread_fractions"]
        assert isinstance(threads, dict)
        assert {"MainThread", "dsp", "store"} <= set(threads)
        evaluated, committed = r["evaluated_s"], r["committed_s"]
        assert isinstance(evaluated, list)
        assert isinstance(committed, list)
        assert len(evaluated) > channels // 16  # every device's last channel was measured
        assert len(committed) > 50  # the level rules raised and cleared
        p50, p99 = pct(committed, 50), pct(committed, 99)
        e50, e99 = pct(evaluated, 50), pct(evaluated, 99)
        assert math.isfinite(p99)
        assert math.isfinite(e99)
        setting = "" if wait is None else f", dsp.batch_wait_ms = {wait:g}"
        if wait is not None:
            print(
                f"\n[bench] end to end, {channels} ch x 25.6 kHz{setting}: {frac:.2f} of one "
                f"core; window-to-alert-committed p50 {p50:.1f} ms p99 {p99:.1f} ms; "
                f"window-to-score-evaluated p50 {e50:.1f} ms p99 {e99:.1f} ms; CPU per thread: "
                f"event loop {threads['MainThread']:.2f}, DSP worker {threads['dsp']:.2f}, "
                f"store {threads['store']:.2f}"
            )
            bench.record(f"CPU, {channels} ch{setting}", frac, "cores")
            bench.record(f"p99 window-to-alert-committed, {channels} ch{setting}", p99, "ms")
            unbatched[channels] = frac
            continue
        bare = bare_commits(tmp_path / f"bare-{channels}.sqlite")
        b50, b99 = pct(bare, 50), pct(bare, 99)
        print(
            f"\n[bench] end to end, {channels} ch x 25.6 kHz: {frac:.2f} of one core "
            f"(goal < 0.5 at 256); window-to-alert-committed p50 {p50:.1f} ms p99 {p99:.1f} ms "
            f"over {len(committed)} alerts; window-to-score-evaluated p50 {e50:.1f} ms "
            f"p99 {e99:.1f} ms over {len(evaluated)} windows (each device's last channel); "
            f"RSS {rss / 2**20:.0f} MiB; "
            f"bare durable commit on the same disk p50 {b50:.1f} ms p99 {b99:.1f} ms"
            f"\n[bench]   CPU per thread, fraction of one core: event loop "
            f"{threads['MainThread']:.2f}, DSP worker (features and model) {threads['dsp']:.2f}, "
            f"store {threads['store']:.2f}, others "
            f"{sum(v for k, v in threads.items() if k not in ('MainThread', 'dsp', 'store')):.2f}"
        )
        bench.record(
            f"CPU, {channels} ch @25.6 kHz", frac, "cores", baseline=unbatched.get(channels),
            baseline_name="dsp.batch_wait_ms = 0", goal="< 0.5 at 256",
        )  # fmt: skip
        for name, label in THREADS:
            bench.record(f"CPU, {channels} ch, {label} thread", threads[name], "cores")
        goal = "< 10 ms" if channels == 64 else "< 25 ms"
        bare_name = "bare SQLite FULL commit, p99"
        bench.record(
            f"p99 window-to-alert-committed, {channels} ch", p99, "ms", baseline=b99,
            baseline_name=bare_name, goal=goal,
        )  # fmt: skip
        bench.record(
            f"p50 window-to-alert-committed, {channels} ch", p50, "ms", baseline=b50,
            baseline_name="bare SQLite FULL commit, p50",
        )  # fmt: skip
        bench.record(f"p99 window-to-score-evaluated, {channels} ch", e99, "ms")
        bench.record(f"RSS, {channels} ch", rss / 2**20, "MiB", goal="< 200 MiB at 256")
