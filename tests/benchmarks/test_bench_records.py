"""Per-window costs on the event loop (``make bench``): ratios against baselines measured in
this run.

1. Store encoding: feature frames (24 features, as the shipped model's layout) and their scores
   to rows as stored, by ``codec.encode_records`` (the store writer's path: compact feature rows),
   against building each record's ``Row`` (``record_row``) and encoding its payload dict
   (``encode_rows``: feature rows in full), which read back the same. Goal: >= 1.3x. Also the
   bytes stored per window (payloads), against the rows in full.
2. Alert baselines: 256 channels' frames observed in device batches of 16, settled when the queue
   is full (``MAX_PENDING``, as the alert stage leaves it), against a settle after every batch.
   Goal: >= 1.5x.
3. Alert engine: windows through ``on_items`` in device batches against ``on_frame``/``on_score``
   one item at a time. Goal: >= 1.15x.
"""

from __future__ import annotations

import numpy as np

from gateway.alerts.baseline import BaselineBank
from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import AlertEngine
from gateway.config.plant import Asset
from gateway.core.records import FeatureFrame, Score
from gateway.store import layouts
from gateway.store.codec import StoreRecord, encode_records, record_row
from gateway.store.journal import decode_payload, encode_rows
from tests.benchmarks.conftest import Bench
from tests.benchmarks.timing import best_of

CHANNELS = 256
WIDTH = 24
BATCH = 16


def windows(n: int) -> list[StoreRecord]:
    """``n`` windows of ``CHANNELS`` channels: a frame and its score each."""
    rng = np.random.default_rng(3)
    names = tuple(f"feature_{k}" for k in range(WIDTH))
    units = tuple("g" if k % 3 else "Hz" for k in range(WIDTH))
    out: list[StoreRecord] = []
    for i in range(n):
        ch, t = f"c{i % CHANNELS}", 1_700_000_000_000_000_000 + i * 80_000_000
        values = rng.standard_normal(WIDTH) * 0.04
        out.append(
            FeatureFrame(f"a{i % CHANNELS}", ch, t, t + 160_000_000, t, "v2", names, units, values)
        )
        out.append(Score(f"a{i % CHANNELS}", t, "motor-pump", "1.0.0", 0.5, 3.2, channel=ch))
    return out


def test_store_encoding(bench: Bench) -> None:
    recs = windows(4 * CHANNELS)
    compact, full = encode_records(recs), encode_rows([record_row(r) for r in recs])
    assert [layouts.expand(decode_payload(r.payload), layouts.REGISTERED) for r in compact] == [
        decode_payload(r.payload) for r in full
    ]
    ours = baseline = float("inf")
    for _ in range(7):  # interleaved: both see the same load
        ours = min(ours, best_of(lambda: encode_records(recs), 3))
        baseline = min(baseline, best_of(lambda: encode_rows([record_row(r) for r in recs]), 3))
    n = len(recs) / 2
    print(
        f"\n[bench] store encoding, per window (frame + score): {ours / n * 1e6:.2f} us, "
        f"Row then payload dict {baseline / n * 1e6:.2f} us -> ratio {baseline / ours:.2f}x"
    )
    bench.record(
        "store encoding (frame + score)",
        n / ours,
        "windows/s",
        baseline=n / baseline,
        baseline_name="record_row + encode_rows",
        goal=">= 1.3x",
    )
    size, size_full = (sum(len(r.payload.encode()) for r in rows) / n for rows in (compact, full))
    print(f"[bench] stored per window: {size:.0f} bytes, in full {size_full:.0f} bytes")
    bench.record(
        "stored payload bytes per window (frame + score), less is better",
        size,
        "bytes",
        baseline=size_full,
        baseline_name="rows in full",
    )


def test_alert_baselines(bench: Bench) -> None:
    frames = [r for r in windows(8 * CHANNELS) if isinstance(r, FeatureFrame)]

    def run(settle_every_batch: bool) -> None:
        bank = BaselineBank(0.01, 10)
        for i in range(0, len(frames), BATCH):
            for f in frames[i : i + BATCH]:
                bank.observe(f, True)
            if settle_every_batch:
                bank.settle()
        bank.settle()

    ours = baseline = float("inf")
    for _ in range(7):
        ours = min(ours, best_of(lambda: run(False), 3))
        baseline = min(baseline, best_of(lambda: run(True), 3))
    n = len(frames)
    print(
        f"\n[bench] alert baselines, per frame: {ours / n * 1e6:.2f} us settled when full, "
        f"{baseline / n * 1e6:.2f} us settled every {BATCH} -> ratio {baseline / ours:.2f}x"
    )
    bench.record(
        "alert baseline observations",
        n / ours,
        "frames/s",
        baseline=n / baseline,
        baseline_name=f"settled every batch of {BATCH}",
        goal=">= 1.5x",
    )


def test_alert_engine_batches(bench: Bench) -> None:
    """3. The alert stage's path: windows (frame + score) of 256 assets, each with a score rule,
    through ``AlertEngine.on_items`` in device batches, against ``on_frame``/``on_score`` one
    item at a time (the same transitions)."""
    rules = {
        f"r{i}": {"asset": f"a{i}", "source": "score", "raise_level": 0.9, "clear_level": 0.5}
        for i in range(CHANNELS)
    }
    cfg = AlertsConfig.model_validate({"rules": rules})
    assets = {
        f"a{i}": Asset.model_validate({"channels": [f"c{i}"], "shaft_speed_hz": 25.0})
        for i in range(CHANNELS)
    }
    recs = [r for r in windows(8 * CHANNELS) if isinstance(r, (FeatureFrame, Score))]
    batches = [recs[i : i + 2 * BATCH] for i in range(0, len(recs), 2 * BATCH)]
    batched, single = AlertEngine(cfg, assets), AlertEngine(cfg, assets)

    def run_batched() -> None:
        for b in batches:
            batched.on_items(b)

    def run_single() -> None:
        for b in batches:
            for r in b:
                single.on_frame(r) if isinstance(r, FeatureFrame) else single.on_score(r)

    ours = baseline = float("inf")
    for _ in range(7):
        ours = min(ours, best_of(run_batched, 3))
        baseline = min(baseline, best_of(run_single, 3))
    n = len(recs) / 2
    print(
        f"\n[bench] alert engine, per window (frame + score): {ours / n * 1e6:.2f} us in "
        f"batches, {baseline / n * 1e6:.2f} us one by one -> ratio {baseline / ours:.2f}x"
    )
    bench.record(
        "alert engine (frame + score)",
        n / ours,
        "windows/s",
        baseline=n / baseline,
        baseline_name="on_frame/on_score one by one",
        goal=">= 1.15x",
    )
