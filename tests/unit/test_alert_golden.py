"""Golden alarm sequences: each folder of tests/golden/alerts holds a config (assets and alert
rules), an input series (input.csv of scores or input.jsonl of events) and the exact expected
transitions (expected.jsonl)."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import AlertEngine
from gateway.config.plant import Asset
from gateway.core.records import AlertEvent, FeatureFrame, Quality, Score

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "alerts"
T0 = 1_700_000_000_000_000_000
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _ns(t: float) -> int:
    return T0 + round(t * 1e9)


def _events(case: Path) -> list[dict[str, Any]]:
    if (case / "input.csv").exists():
        with (case / "input.csv").open() as f:
            return [
                {k: (v if k == "asset" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    return [json.loads(line) for line in (case / "input.jsonl").read_text().splitlines() if line]


def run_case(case: Path) -> list[dict[str, Any]]:
    cfg = tomllib.loads((case / "config.toml").read_text())
    assets = {n: Asset.model_validate(a) for n, a in cfg["assets"].items()}
    engine = AlertEngine(AlertsConfig.model_validate(cfg["alerts"]), assets)
    first = next(iter(assets))
    out: list[AlertEvent] = []
    for e in _events(case):
        ts = _ns(e["t"])
        asset = e.get("asset", first)
        if "score" in e:
            out += engine.on_score(
                Score(
                    asset,
                    ts,
                    "m-iforest",
                    "3",
                    float(e["score"]),
                    0.5,
                    shadow=e.get("shadow", False),
                    channel=e.get("ch", ""),
                )
            )
        elif "frame" in e:
            names = tuple(e["frame"])
            frame = FeatureFrame(
                asset,
                e["channel"],
                ts,
                ts,
                ts,
                "golden",
                names,
                ("",) * len(names),
                np.array([e["frame"][n] for n in names], dtype=np.float64),
                Quality[e.get("quality", "good").upper()],
            )
            out += engine.on_frame(frame)
        elif "tick" in e:
            out += engine.tick(ts)
        elif "source" in e:
            out += engine.set_source(e["source"], e["connected"], ts)
        elif "ack" in e:
            (alert_id,) = [
                s.active.alert_id for n, s in engine.active() if n == e["ack"] and s.active
            ]
            out.append(engine.acknowledge(alert_id, ts, by="op"))
        else:
            raise ValueError(f"unknown input event {e}")
    ids: dict[str, int] = {}
    result = []
    for ev in out:
        row: dict[str, Any] = {
            "t": round((ev.ts_ns - T0) / 1e9, 6),
            "rule": ev.rule,
            "state": ev.state.value,
            "severity": ev.severity.name.lower(),
            "category": ev.category,
            "alert": ids.setdefault(ev.alert_id, len(ids) + 1),
        }
        if ev.top_features:
            row["top"] = [name for name, _ in ev.top_features]
        result.append(row)
    return result


@pytest.mark.parametrize("case", CASES)
def test_golden_alert_sequence(case: str) -> None:
    expected = [
        json.loads(line)
        for line in (GOLDEN / case / "expected.jsonl").read_text().splitlines()
        if line
    ]
    assert run_case(GOLDEN / case) == expected


def test_every_case_has_transitions() -> None:
    assert len(CASES) >= 5
    for case in CASES:
        assert (GOLDEN / case / "expected.jsonl").read_text().strip(), case
