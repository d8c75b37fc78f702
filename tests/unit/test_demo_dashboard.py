"""The demo dashboard fed by the real alert engine with the demo's rules: scores, trends,
health, active alerts and the gateway state, on the live screen and in the plain snapshot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from gateway.alerts.engine import AlertEngine
from gateway.config.schema import GatewayConfig
from gateway.core.records import AlertState, FeatureFrame, Score
from gateway.demo.dashboard import SPARK_ASCII, board, render_rich, render_text, sparkline
from gateway.demo.plant import demo_config, demo_machines, models_dir
from gateway.demo.watch import TREND, Watch

S = 1_000_000_000
STATUS: dict[str, object] = {
    "devices": {a: {"state": "connected"} for a in ("pump1", "fan2", "pump3")},
    "store": {"written": 1234, "pending": 5},
    "health": {"state": "ok", "reasons": []},
}


@pytest.fixture
def cfg(tmp_path: Path) -> GatewayConfig:
    return demo_config(demo_machines(), 5020, tmp_path, models_dir())


def score(asset: str, t_s: float, value: float, cfg: GatewayConfig) -> Score:
    thr = 3.28 if cfg.models.assets[asset] == "motor-pump" else 3.86
    return Score(asset, round(t_s * S), cfg.models.assets[asset], "1.0.0", value, thr)


def frame(asset: str, t_s: float, **features: float) -> FeatureFrame:
    names = tuple(features)
    return FeatureFrame(
        asset,
        f"{asset}_temp" if "value" in features else f"{asset}_vib",
        round(t_s * S) - S // 10,
        round(t_s * S),
        round(t_s * S),
        "pdm-features/2",
        names,
        ("",) * len(names),
        np.array(list(features.values()), dtype=np.float64),
    )


def test_sparkline_puts_the_threshold_in_the_middle() -> None:
    assert sparkline([0.0, 0.99, 1.0, 2.0, 50.0, float("nan")], 1.0, SPARK_ASCII) == "_:=##_"
    assert sparkline([0.5], 1.0, SPARK_ASCII) == "-"  # a quarter of the scale
    assert sparkline([], 1.0) == ""


async def test_dashboard_shows_scores_alerts_and_gateway_state(cfg: GatewayConfig) -> None:
    engine = AlertEngine(cfg.alerts, dict(cfg.assets))
    watch = Watch(list(cfg.assets), 0)
    items: list[FeatureFrame | Score] = []
    for k in range(60):  # 6 s at 10 scores per second; pump3's score climbs past the threshold
        t = 0.1 * k
        items += [score("pump1", t, 0.5, cfg), score("fan2", t, 0.6, cfg)]
        items.append(score("pump3", t, 0.5 if t < 3 else 5.0 * t, cfg))
    items += [
        frame("pump3", 6.0, velocity_rms=2.4, env_bpfo_amp=0.21),
        frame("pump3", 6.0, value=55.0),
        frame("fan2", 6.0, velocity_rms=5.0, env_bpfo_amp=0.0003),
    ]
    events = []
    for it in items:
        events += engine.on_score(it) if isinstance(it, Score) else engine.on_frame(it)
    await watch.publish(items, events, engine)

    assert {e.rule for e in events if e.state is AlertState.RAISED} == {
        "pump3_score",
        "pump3_score_high",
    }
    assert watch.assets["pump3"].raised == 2
    assert len(watch.assets["pump3"].trend) == 6  # one (highest) score per second
    assert watch.assets["pump3"].trend[-1] == pytest.approx(29.5)

    b = board(cfg, watch, STATUS, 7 * S, 7.0)
    rows = {r.asset: r for r in b.rows}
    assert (rows["pump1"].health, rows["fan2"].health, rows["pump3"].health) == (
        "ok",
        "ok",
        "alarm",
    )
    assert rows["fan2"].zone == "C"  # 5 mm/s on a flexible group-2 machine
    assert [a.rule for a in b.alerts] == ["pump3_score_high", "pump3_score"]  # worst first
    assert b.alerts[1].since_s == pytest.approx(7.0 - 3.2, abs=0.11)
    assert "uplink: no uplink" in b.footer[0]
    assert "1234 records written, 5 pending" in b.footer[0]

    text = render_text(b).splitlines()
    pump3 = next(line for line in text if line.startswith("pump3")).split()
    assert pump3[1:5] == ["alarm", "connected", "29.50", "3.28"]
    assert pump3[7:10] == ["B", "0.2100", "55.0"]
    assert "active alerts: 2" in text

    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_rich(b))
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "ALARM" in screen
    assert "pump3_score_high" in screen
    assert "29.50 / 3.28" in screen
    assert f"last {TREND} s" in screen


def test_uplink_backlog_and_unreachable_devices_are_shown(cfg: GatewayConfig) -> None:
    watch = Watch(list(cfg.assets), 0)
    status = {
        **STATUS,
        "store": {"written": 10, "pending": 0, "backlog": 42},
        "uplink": {"state": "connected", "sent": 7},
    }
    status["devices"] = {**STATUS["devices"], "fan2": {"state": "unreachable"}}
    b = board(cfg, watch, status, 0, 0.0)
    assert "backlog 42" in b.footer[0]
    assert "uplink: state connected, sent 7" in b.footer[0]
    assert [r.health for r in b.rows] == ["ok", "no data", "ok"]
    assert all(r.zone == "-" for r in b.rows)  # no frames yet: no values, no crash
    assert "-" in render_text(b)
