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


def run_case(case: Path, batched: bool = False) -> list[dict[str, Any]]:
    """The transitions of a case; ``batched``: runs of frames and scores through ``on_items``
    (as the alert stage feeds them), else each through ``on_frame``/``on_score``."""
    cfg = tomllib.loads((case / "config.toml").read_text())
    assets = {n: Asset.model_validate(a) for n, a in cfg["assets"].items()}
    engine = AlertEngine(AlertsConfig.model_validate(cfg["alerts"]), assets)
    first = next(iter(assets))
    out: list[AlertEvent] = []
    run: list[FeatureFrame | Score] = []

    def feed(item: FeatureFrame | Score) -> None:
        nonlocal out
        if batched:
            run.append(item)
        elif isinstance(item, FeatureFrame):
            out += engine.on_frame(item)
        else:
            out += engine.on_score(item)

    for e in _events(case):
        ts = _ns(e["t"])
        asset = e.get("asset", first)
        if run and not ("score" in e or "frame" in e):
            out += engine.on_items(run)
            run.clear()
        if "score" in e:
            feed(
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
            feed(frame)
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
    out += engine.on_items(run)
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


@pytest.mark.parametrize("batched", [False, True], ids=["per-item", "batched"])
@pytest.mark.parametrize("case", CASES)
def test_golden_alert_sequence(case: str, batched: bool) -> None:
    expected = [
        json.loads(line)
        for line in (GOLDEN / case / "expected.jsonl").read_text().splitlines()
        if line
    ]
    assert run_case(GOLDEN / case, batched) == expected


def test_every_case_has_transitions() -> None:
    assert len(CASES) >= 5
    for case in CASES:
        assert (GOLDEN / case / "expected.jsonl").read_text().strip(), case


def test_batches_give_what_items_one_by_one_give() -> None:
    """Random frames and scores of assets with and without rules (score rules on any or one
    channel, level rules, shadow scores, model changes, every quality), through ``on_items`` in
    random batches and one by one: the same transitions, active alerts and baselines."""
    rng = np.random.default_rng(7)
    assets = {
        f"a{i}": Asset.model_validate({"channels": [f"c{i}", f"d{i}"], "shaft_speed_hz": 25.0})
        for i in range(6)
    }
    score = {"source": "score", "raise_level": 0.6, "clear_level": 0.4, "on_n": 2, "on_m": 3}
    rules: dict[str, dict[str, object]] = {
        "s0": {"asset": "a0", **score},
        "s1": {"asset": "a1", "channel": "c1", **score},
        "s1b": {"asset": "a1", **score, "on_n": 1, "on_m": 1, "off_n": 1, "off_m": 1},
        "f2": {"asset": "a2", "source": "feature", "channel": "c2", "feature": "rms",
               "raise_level": 0.5, "clear_level": 0.3, "on_n": 1, "on_m": 1},
        "s3": {"asset": "a3", **score, "off_n": 1, "off_m": 2},
    }  # fmt: skip
    cfg = AlertsConfig.model_validate({"rules": rules, "top_features": 2})
    one, many = AlertEngine(cfg, assets), AlertEngine(cfg, assets)
    names = ("rms", "peak", "kurtosis")
    items: list[FeatureFrame | Score] = []
    for k in range(3000):
        i, ts = int(rng.integers(7)), T0 + k * 1000
        asset, channel = f"a{i}", f"{'cd'[int(rng.integers(2))]}{i}"
        if rng.random() < 0.5:
            quality = Quality(int(rng.choice([0, 0, 0, 1, 2])))
            values = rng.random(3)
            items.append(
                FeatureFrame(asset, channel, ts, ts, ts, "v", names, ("g",) * 3, values, quality)
            )
        else:
            model = ("m", "1") if k < 2000 else ("m", "2")
            shadow = bool(rng.random() < 0.1)
            x = float(rng.random())
            items.append(Score(asset, ts, *model, x, 0.6, shadow=shadow, channel=channel))
    want: list[AlertEvent] = []
    for it in items:
        want += one.on_frame(it) if isinstance(it, FeatureFrame) else one.on_score(it)
    got: list[AlertEvent] = []
    start = 0
    while start < len(items):
        n = int(rng.integers(1, 64))
        got += many.on_items(items[start : start + n])
        start += n
    assert got == want
    assert len({e.rule for e in want}) == 5  # every rule transitioned
    assert many.snapshot() == one.snapshot()
    assert many.models == one.models
    for asset in assets:
        assert many.baseline.top(asset, 3) == one.baseline.top(asset, 3)
    for name, st in one.states.items():
        other = many.states[name]
        assert (list(other.hits), list(other.oks), other.model) == (
            list(st.hits),
            list(st.oks),
            st.model,
        )
