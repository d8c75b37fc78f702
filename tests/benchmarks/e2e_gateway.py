"""One end-to-end benchmark run in a process of its own (``test_bench_e2e.py`` starts it), so that
its CPU time and RSS are the gateway's alone, not the test runner's or the simulator's.

``python -m tests.benchmarks.e2e_gateway --channels N --signal S.npy --state DIR --out R.json``

N vibration channels at 25.6 kHz are fed in real time (0.1 s blocks, cut from the recorded signal
``S.npy``) into the pipeline's ``samples`` queue as devices of 16 channels deliver them: a device's
16 blocks together, the devices at phases spread evenly over the 0.1 s period (as independently
polled devices are). They go through DSP, the shipped LiteRT model, the alert engine and the SQLite
store (``synchronous=FULL``). Every asset has a score rule, as in production; four channels also
have a level rule on their window RMS set at the signal's median RMS, with no delays, so that they
raise and clear all the time (about 25 transitions per second, a busy plant's worth whatever the
channel count): those alerts give the latency from the arrival of the block that completes a window
to the alert on that window committed in the journal. Written to ``R.json``: CPU time over wall
time after a warm-up (a fraction of one core), and the same per thread (by name: ``MainThread`` is
the event loop, ``dsp`` the DSP worker, which also scores the frames with the model, ``store`` the
journal's), the window-to-alert-evaluation delays of the scores of each device's last channel (the
last of its delivery, so the longest of it: measuring every score would add its own cost to the
figures), the window-to-alert-committed delays, and the process's RSS at the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.alerts.engine import AlertEngine
from gateway.config.schema import GatewayConfig
from gateway.core.records import AlertEvent, FeatureFrame, SampleBlock, Score
from gateway.inference.features import dsp_for
from gateway.inference.manifest import read_manifest
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import EncodedRow

FS = 25_600.0
BLOCK = 2560  # 0.1 s
WARMUP_S = 3.0
LEVEL_RULES = 4  # channels with a flapping level rule (spread over the devices)
PER_DEVICE = 16  # channels per simulated device (their blocks arrive together)
MODELS = Path(__file__).resolve().parents[2] / "models"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each of this process's threads so far, by thread name without its pool
    index (``dsp_0`` -> ``dsp``; threads of one name summed; unnamed ones as ``other``)."""
    names = {t.native_id: re.sub(r"_\d+$", "", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        task = Path("/proc/self/task") / tid
        try:
            try:  # run time in ns, where the kernel keeps it
                cpu = int((task / "schedstat").read_text().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                utime, stime = (task / "stat").read_text().rsplit(")", 1)[1].split()[11:13]
                cpu = (int(utime) + int(stime)) / tick
        except OSError:  # (the thread ended meanwhile)
            continue
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + cpu
    return out


def median_rms(base: np.ndarray, window: int, hop: int) -> float:
    w = np.lib.stride_tricks.sliding_window_view(base, window)[::hop]
    return float(np.median(np.sqrt(np.mean(w.astype(np.float64) ** 2, axis=1))))


class Delays:
    """Per window end time, the delay since its completing block arrived; score evaluations
    are measured on the ``watched`` channels."""

    def __init__(
        self, t0_ns: int, arrivals: dict[tuple[int, int], float], watched: frozenset[str]
    ) -> None:
        self.t0_ns, self.arrivals, self.watched = t0_ns, arrivals, watched
        self.after = float("inf")  # perf_counter after which delays count (warm-up excluded)
        self.evaluated: list[float] = []
        self.committed: list[float] = []

    def delay(self, end_ts_ns: int, channel: str, now: float) -> float | None:
        last_sample = round((end_ts_ns - self.t0_ns) * FS / 1e9) - 1
        arrived = self.arrivals.get((last_sample // BLOCK, int(channel[1:]) // PER_DEVICE))
        return now - arrived if arrived is not None and arrived >= self.after else None

    async def publish(
        self, items: Sequence[FeatureFrame | Score], events: Sequence[AlertEvent], _: AlertEngine
    ) -> None:
        now = time.perf_counter()
        watched = self.watched
        for it in items:
            if (
                it.channel in watched
                and isinstance(it, Score)
                and (d := self.delay(it.ts_ns, it.channel, now)) is not None
            ):
                self.evaluated.append(d)

    def on_commit(self, rows: Sequence[EncodedRow]) -> None:
        now = time.perf_counter()
        for r in rows:
            if r.kind == "alert" and (d := self.delay(r.ts_ns, r.channel, now)) is not None:
                self.committed.append(d)


def config(
    channels: int, state: Path, level: float | None = None, batch_wait_ms: float | None = None
) -> GatewayConfig:
    """The benchmark's gateway: ``channels`` vibration channels each an asset with the shipped
    model and a score rule; with ``level``, the flapping level rules too; with
    ``batch_wait_ms``, that ``dsp.batch_wait_ms`` instead of the default."""
    model = MODELS / "motor-pump"  # the shipped model (gateway.demo would load the simulators)
    manifest = read_manifest(model)
    rules: dict[str, dict[str, object]] = {
        f"r{i}": {
            "asset": f"a{i}",
            "source": "score",
            "raise_level": manifest.threshold,
            "clear_level": 0.8 * manifest.threshold,
        }
        for i in range(channels)
    }
    for i in range(0, channels if level is not None else 0, max(1, channels // LEVEL_RULES)):
        rules[f"level{i}"] = {
            "asset": f"a{i}",
            "source": "feature",
            "channel": f"c{i}",
            "feature": "rms",
            "raise_level": level,
            "clear_level": level * (1 - 1e-6),
            "on_n": 1,
            "on_m": 1,
            "off_n": 1,
            "off_m": 1,
        }
    raw = {
        "gateway": {"state_dir": str(state)},
        "dsp": dsp_for(manifest.dsp, FS).model_dump(mode="json")
        | ({} if batch_wait_ms is None else {"batch_wait_ms": batch_wait_ms}),
        "channels": {f"c{i}": {"kind": "vibration", "sample_rate_hz": FS} for i in range(channels)},
        "assets": {
            f"a{i}": {"channels": [f"c{i}"], "shaft_speed_hz": 24.75} for i in range(channels)
        },
        "models": {
            "assets": {f"a{i}": "motor-pump" for i in range(channels)},
            "paths": {"motor-pump": str(model)},
        },
        "alerts": {"rules": rules},
        "runtime": {
            "http": {"enabled": False},
            "queues": {"samples": {"size": 4 * channels}, "records": {"size": 64 * channels}},
        },
    }
    return GatewayConfig.model_validate(raw)


async def run(
    channels: int,
    base: np.ndarray,
    state: Path,
    run_s: float,
    batch_wait_ms: float | None = None,
) -> dict[str, object]:
    cfg0 = config(channels, state)
    level = median_rms(base, cfg0.dsp.window, cfg0.dsp.hop)
    pipe = Pipeline(config(channels, state, level, batch_wait_ms))
    t0_ns = time.time_ns()
    arrivals: dict[tuple[int, int], float] = {}
    last = {min(channels, d + PER_DEVICE) - 1 for d in range(0, channels, PER_DEVICE)}
    delays = Delays(t0_ns, arrivals, frozenset(f"c{i}" for i in last))
    pipe.alerts.publishers.append(delays)
    await pipe.start()
    assert pipe.store is not None
    pipe.store.on_commit.append(delays.on_commit)
    loop = asyncio.get_running_loop()
    start = loop.time()
    blocks = int(run_s * FS / BLOCK)
    looped = np.concatenate((base, base))
    c0 = w0 = 0.0
    threads0: dict[str, float] = {}
    devices = max(1, channels // PER_DEVICE)
    period = BLOCK / FS
    for k in range(blocks):
        if k == int(WARMUP_S * FS / BLOCK):
            c0, w0 = time.process_time(), time.perf_counter()
            threads0 = thread_cpu_s()
            delays.after = w0
        off = (k * BLOCK) % base.shape[0]
        seg = looped[off : off + BLOCK]  # a read-only view shared by every channel's block
        ts = t0_ns + round(k * BLOCK / FS * 1e9)
        for d in range(devices):  # each device delivers its channels' blocks at its own phase
            due = start + (k + 1) * period + d * period / devices
            await asyncio.sleep(max(0.0, due - loop.time()))
            arrivals[(k, d)] = time.perf_counter()
            await pipe.samples.put_many(
                [
                    SampleBlock(f"c{i}", ts, ts, FS, seg, k * BLOCK)
                    for i in range(d * PER_DEVICE, min(channels, (d + 1) * PER_DEVICE))
                ]
            )
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    threads = {k: (v - threads0.get(k, 0.0)) / wall for k, v in thread_cpu_s().items()}
    rss = rss_bytes()
    await pipe.stop()
    return {
        "cpu_fraction": cpu / wall,
        "thread_fractions": threads,
        "evaluated_s": delays.evaluated,
        "committed_s": delays.committed,
        "rss_bytes": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, required=True)
    ap.add_argument("--signal", type=Path, required=True)
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--batch-wait-ms", type=float, default=None)
    a = ap.parse_args()
    base = np.load(a.signal).astype(np.float32)
    result = asyncio.run(run(a.channels, base, a.state, a.seconds, a.batch_wait_ms))
    a.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
