"""Benchmarks of the forwarding policy's per-record costs, as ratios against encoding the same
records as line protocol (what full-rate forwarding does for each) in the same run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.core.records import FeatureFrame
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.selection import DetailSelector
from gateway.forwarding.summary import Summarizer
from gateway.store.codec import frame_row
from gateway.store.journal import Journal
from gateway.uplink.lineproto import to_line
from tests.benchmarks.conftest import Bench
from tests.benchmarks.test_bench_foundation import report
from tests.benchmarks.timing import best_of

T0 = 1_700_000_000_000_000_000
N = 10_000
NAMES = tuple(f"f{i}" for i in range(30))


def frames() -> list[FeatureFrame]:
    rng = np.random.default_rng(0)
    return [
        FeatureFrame(
            "m1",
            "m1_vib",
            T0 + i * 100_000_000,
            T0 + i * 100_000_000 + 200_000_000,
            T0,
            "s",
            NAMES,
            ("",) * len(NAMES),
            rng.normal(0, 1, len(NAMES)),
        )
        for i in range(N)
    ]


def test_bench_summaries_and_selection_vs_line_encoding(bench: Bench, tmp_path: Path) -> None:
    fs = frames()
    rows = [frame_row(f) for f in fs]
    cfg = ForwardingConfig.model_validate(
        {"default": {"mode": "summary", "summary_interval_s": 60.0}, "settle_s": 0.0}
    )
    journal = Journal(tmp_path / "j.sqlite")

    def summarise() -> None:
        s = Summarizer({"m1": 60.0})
        for f in fs:
            s.add(f)

    def select() -> None:
        DetailSelector(cfg).decide(journal, rows, T0 + 10**15)

    def encode() -> None:
        for r in rows:
            to_line(r)

    t_sum, t_sel, t_enc = best_of(summarise), best_of(select), best_of(encode)
    journal.close()
    report(bench, "summaries of 10k 30-feature frames", t_sum, t_enc, "line-encoding them")
    report(bench, "detail selection of 10k rows", t_sel, t_enc, "line-encoding them")
