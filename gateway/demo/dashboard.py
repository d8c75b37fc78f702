"""The demo's terminal dashboard: a ``rich`` live screen on a terminal, a plain-text snapshot
otherwise (CI logs, pipes). Both render the same ``Board`` (one row per asset, the active alerts,
and the gateway's state taken from ``Pipeline.status()``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.alerts import iso20816
from gateway.config.schema import GatewayConfig
from gateway.core.records import Severity
from gateway.demo.watch import TREND, ActiveAlert, Watch

SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-:=+*#"
#: severity -> rich style
STYLE = {
    Severity.ADVISORY: "cyan",
    Severity.WARNING: "yellow",
    Severity.ALARM: "bold red",
    Severity.CRITICAL: "bold white on red",
}


def sparkline(values: Iterable[float], threshold: float, chars: str = SPARK) -> str:
    """One character per value on a scale from 0 to twice the threshold: values at or above
    the threshold use the upper half of ``chars``, values below it the lower half (values
    above twice the threshold show as the top character, non-finite ones as the bottom)."""
    n = len(chars)
    out = []
    for v in values:
        x = v / (2 * threshold) if (math.isfinite(v) and threshold > 0) else 0.0
        out.append(chars[min(n - 1, max(0, math.floor(x * n)))])
    return "".join(out)


@dataclass(frozen=True)
class Row:
    asset: str
    model: str
    device: str
    health: str  #: the worst active machine alert's severity, else "no data" or "ok"
    severity: Severity | None
    score: float
    threshold: float
    trend: tuple[float, ...]
    velocity_mm_s: float
    zone: str
    env_bpfo_g: float
    temperature_c: float
    truth: str  #: the simulated fault, for the viewer


@dataclass(frozen=True)
class Board:
    title: str
    rows: tuple[Row, ...]
    alerts: tuple[ActiveAlert, ...]
    footer: tuple[str, ...]


def _get(d: object, *keys: str) -> Any:
    """``d[k1][k2]...``, None where a level is missing."""
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _uplink(status: Mapping[str, Any]) -> str:
    up = status.get("uplink")
    if not up:
        return "no uplink"
    if isinstance(up, Mapping):
        return ", ".join(f"{k} {v}" for k, v in up.items() if not isinstance(v, Mapping | list))
    return str(up)


def board(
    cfg: GatewayConfig,
    watch: Watch,
    status: Mapping[str, Any],
    now_ns: int,
    elapsed_s: float,
    extra: Iterable[str] = (),
) -> Board:
    """Everything the dashboard shows at one moment."""
    nan = float("nan")
    rows = []
    for asset, a in cfg.assets.items():
        v = watch.assets[asset]
        f = v.features
        vel = f.get(iso20816.VELOCITY_FEATURE, nan)
        sev = watch.health(asset)
        truth = (
            f"outer-race defect, severity {v.severity:.2f}"
            if v.severity > 0
            else ("healthy" if "defect" not in a.description else "defect not yet started")
        )
        device = str(_get(status, "devices", asset, "state") or "-")
        state = sev.name.lower() if sev else ("no data" if device == "unreachable" else "ok")
        rows.append(
            Row(
                asset=asset,
                model=cfg.models.assets.get(asset, "-"),
                device=device,
                health=state,
                severity=sev,
                score=v.score,
                threshold=v.threshold,
                trend=v.trend,
                velocity_mm_s=vel,
                zone=iso20816.zone(a.machine_class, vel) if math.isfinite(vel) else "-",
                env_bpfo_g=f.get("env_bpfo_amp", nan),
                temperature_c=v.temperature_c,
                truth=truth,
            )
        )
    store = _get(status, "store") or {}
    backlog = _get(status, "store", "backlog")
    health = _get(status, "health") or {}
    reasons = "; ".join(health.get("reasons", [])) or "all stages ok"
    days = max((v.machine_days for v in watch.assets.values()), default=0.0)
    footer = (
        f"store: {store.get('written', 0)} records written, {store.get('pending', 0)} pending"
        + (f", backlog {backlog}" if backlog is not None else "")
        + f"   uplink: {_uplink(status)}",
        "devices: "
        + ", ".join(f"{d} {_get(status, 'devices', d, 'state')}" for d in cfg.devices.modbus),
        f"gateway health: {health.get('state', '?')} ({reasons})",
        *extra,
    )
    title = f"pdm-gateway demo   t = {elapsed_s:5.0f} s   machine time: day {days:5.1f}"
    return Board(title, tuple(rows), tuple(watch.active(now_ns)), footer)


def _num(x: float, fmt: str) -> str:
    return format(x, fmt) if math.isfinite(x) else "-"


def render_rich(b: Board) -> RenderableType:
    t = Table(title=b.title, title_justify="left", expand=False)
    for name, just in (
        ("asset", "left"),
        ("health", "left"),
        ("device", "left"),
        ("score / thr", "right"),
        (f"score, last {TREND} s (thr = middle)", "left"),
        ("v RMS mm/s", "right"),
        ("env BPFO g", "right"),
        ("temp °C", "right"),
        ("simulated truth", "left"),
    ):
        t.add_column(name, justify=just)  # type: ignore[arg-type]
    for r in b.rows:
        trend = Text()
        for v, ch in zip(r.trend, sparkline(r.trend, r.threshold), strict=True):
            trend.append(ch, style="red" if v >= r.threshold else "green")
        over = math.isfinite(r.score) and r.score >= r.threshold
        t.add_row(
            f"{r.asset}\n[dim]{r.model}[/dim]",
            Text(
                r.health.upper(),
                style=STYLE[r.severity] if r.severity else ("green" if r.health == "ok" else "dim"),
            ),
            r.device,
            Text(
                f"{_num(r.score, '.2f')} / {_num(r.threshold, '.2f')}",
                style="red" if over else "",
            ),
            trend,
            f"{_num(r.velocity_mm_s, '.2f')} ({r.zone})",
            _num(r.env_bpfo_g, ".4f"),
            _num(r.temperature_c, ".1f"),
            r.truth,
        )
    al = Table(title="active alerts", title_justify="left", expand=False)
    for name in ("severity", "asset", "rule", "since"):
        al.add_column(name)
    for a in b.alerts:
        al.add_row(
            Text(a.severity.name.lower(), style=STYLE[a.severity]),
            a.asset,
            a.rule,
            f"{a.since_s:.0f} s ago" + (" (ack)" if a.acknowledged else ""),
        )
    if not b.alerts:
        al.add_row("-", "none", "", "")
    return Group(t, al, Text("\n".join(b.footer), style="dim"), Text("Ctrl-C to stop"))


def render_text(b: Board) -> str:
    """The plain-text snapshot: a header line, one line per asset, the alerts, the footer."""
    lines = [
        b.title,
        f"{'asset':8} {'health':8} {'device':11} {'score':>7} {'thr':>5} "
        f"{'score, last 20 s':20} {'vRMS':>6} {'zone':4} {'envBPFO':>8} {'tempC':>6}  truth",
    ]
    for r in b.rows:
        lines.append(
            f"{r.asset:8} {r.health:8} {r.device:11} {_num(r.score, '.2f'):>7} "
            f"{_num(r.threshold, '.2f'):>5} "
            f"{sparkline(r.trend[-20:], r.threshold, SPARK_ASCII):20} "
            f"{_num(r.velocity_mm_s, '.2f'):>6} {r.zone:4} {_num(r.env_bpfo_g, '.4f'):>8} "
            f"{_num(r.temperature_c, '.1f'):>6}  {r.truth}"
        )
    lines.append(f"active alerts: {len(b.alerts)}")
    for a in b.alerts:
        lines.append(
            f"  {a.severity.name.lower():8} {a.asset:8} {a.rule:18} since {a.since_s:.0f} s"
            + (" (ack)" if a.acknowledged else "")
        )
    lines += list(b.footer)
    return "\n".join(lines)
