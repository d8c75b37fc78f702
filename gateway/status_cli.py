"""``pdm-gateway status``: ask a running gateway for its status and print it.

The gateway's URL comes from ``--url``, else from ``<state_dir>/http.url`` (written by a running
gateway), else from ``runtime.http`` in the config. Exit codes: 0 healthy or degraded, 1 failing,
3 no gateway answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.loader import load_config


def resolve_url(config: Path | None, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    if config is None:
        return "http://127.0.0.1:9750"
    cfg = load_config(config)
    url_file = cfg.gateway.state_dir / "http.url"
    if url_file.exists():
        return url_file.read_text().strip()
    return f"http://{cfg.runtime.http.host}:{cfg.runtime.http.port}"


def fetch_status(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The gateway's ``/status`` snapshot; ``OSError`` when it does not answer."""
    with urllib.request.urlopen(f"{url}/status", timeout=timeout_s) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _d(x: object) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def format_status(s: Mapping[str, Any]) -> str:
    """A few human-readable lines: health, then devices, queues, store, uplinks, models."""
    health = _d(s.get("health"))
    out = [f"gateway {s.get('gateway', '?')}: {health.get('state', '?')}"]
    out += [f"  - {r}" for r in health.get("reasons", [])]
    devices = _d(s.get("devices"))
    if devices:
        out.append("devices:")
    for name, d in sorted(devices.items()):
        d = _d(d)
        reads = int(d.get("reads", 0))
        lat = float(d.get("read_seconds", 0.0)) / reads * 1e3 if reads else 0.0
        errors = sum(
            int(d.get(k, 0))
            for k in ("transient_errors", "permanent_errors", "failed_requests", "busy")
        )
        out.append(
            f"  {name:<16} {d.get('state', '?'):<12} reads {reads}, errors {errors}, "
            f"latency {lat:.1f} ms, samples lost {d.get('samples_lost', 0)}"
        )
    out.append("queues:")
    for name, q in sorted(_d(s.get("queues")).items()):
        q = _d(q)
        out.append(
            f"  {name:<16} {q.get('depth', 0)}/{q.get('size', 0)} queued, "
            f"{q.get('dropped', 0)} dropped ({q.get('policy', '')})"
        )
    store = _d(s.get("store"))
    out.append(
        f"store: {store.get('state', '?')}, {store.get('written', 0)} written this run, "
        f"{store.get('pending', 0)} pending"
    )
    for name, u in sorted(_d(s.get("uplink")).items()):
        u = _d(u)
        out.append(
            f"uplink {name}: {u.get('state', '?')}, backlog {u.get('backlog', 0)} record(s), "
            f"oldest {float(u.get('oldest_age_s', 0.0)):.0f} s"
        )
    out += _forwarding_lines(_d(s.get("forwarding")))
    out += _escalation_line(_d(s.get("escalation")))
    for asset, m in sorted(_d(_d(s.get("inference")).get("models")).items()):
        active = _d(_d(m).get("active"))
        shadow = _d(_d(m).get("shadow"))
        line = f"model {asset}: {active.get('id', '?')} {active.get('version', '?')}"
        out.append(line + (f", shadow {shadow.get('version', '?')}" if shadow else ""))
    rollbacks = _d(s.get("model_lifecycle")).get("rollbacks")
    if rollbacks:
        out.append(
            f"automatic model rollbacks: {rollbacks} (last: "
            f"{_d(s.get('model_lifecycle')).get('last_rollback', '')})"
        )
    lag = _d(s.get("loop_lag"))
    out.append(
        f"event loop lag: last {float(lag.get('last_s', 0)) * 1e3:.1f} ms, "
        f"max {float(lag.get('max_s', 0)) * 1e3:.1f} ms"
    )
    return "\n".join(out)


def _forwarding_lines(fwd: Mapping[str, Any]) -> list[str]:
    """Bytes collected, forwarded and escalated, per asset and in total (and the ratio)."""
    assets = _d(fwd.get("assets"))
    if not assets:
        return []
    out = ["forwarding (bytes collected / forwarded / escalated):"]
    rows = [(a, _d(v)) for a, v in sorted(assets.items())] + [("total", _d(fwd.get("total")))]
    for name, v in rows:
        col, fw = int(v.get("collected_bytes", 0)), int(v.get("forwarded_bytes", 0))
        ratio = f", {col / fw:.0f}x fewer sent" if fw else ""
        mode = f" [{v['mode']}]" if "mode" in v else ""
        out.append(f"  {name:<16} {col} / {fw} / {int(v.get('escalated_bytes', 0))}{mode}{ratio}")
    return out


def _escalation_line(esc: Mapping[str, Any]) -> list[str]:
    if not esc:
        return []
    return [
        f"escalation: {esc.get('state', '?')}, {esc.get('sent', 0)} snapshot(s) sent, "
        f"{esc.get('verdicts', 0)} verdict(s), {esc.get('retries', 0)} retries"
    ]


def main_status(config: Path | None, url: str | None, as_json: bool) -> int:
    target = resolve_url(config, url)
    try:
        s = fetch_status(target)
    except (OSError, urllib.error.URLError, json.JSONDecodeError) as exc:
        print(f"pdm-gateway: no gateway answers at {target}: {exc}")
        return 3
    print(json.dumps(s, indent=2) if as_json else format_status(s))
    return 1 if _d(s.get("health")).get("state") == "failing" else 0
