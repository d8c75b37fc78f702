"""Overall health from the pipeline's status snapshot: ``ok``, ``degraded`` or ``failing``, with
the reasons, one short sentence each.

- failing: the store cannot write (accepted data is at risk), a stage is crash-looping, or every
  device is unreachable;
- degraded: some device is unreachable or has stale values, a queue dropped data recently, the
  event loop lags, the uplink is not up, a stage restarted recently, the store is full and
  dropping unsent records, or the previous run ended without a clean stop and its backlog is
  not resent yet.

Pure function of the snapshot (``Pipeline.status()``) and the previous snapshot, so it is tested
without a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

HealthState = Literal["ok", "degraded", "failing"]
_ORDER: dict[HealthState, int] = {"ok": 0, "degraded": 1, "failing": 2}

#: event-loop lag above which the gateway reports degraded (seconds)
LAG_DEGRADED_S = 0.5
#: restarts of one stage (since start) past which it counts as crash-looping
CRASH_LOOP_RESTARTS = 5


@dataclass(frozen=True)
class Health:
    state: HealthState = "ok"
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def worse(self, state: HealthState, reason: str) -> Health:
        s = state if _ORDER[state] > _ORDER[self.state] else self.state
        return Health(s, (*self.reasons, reason))

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "reasons": list(self.reasons)}


def _d(x: object) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def assess(status: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> Health:
    """Health of the gateway described by ``status``. ``previous`` (an earlier snapshot) lets
    drops and restarts count only when they happened since then."""
    h = Health()
    prev = _d(previous)
    devices = _d(status.get("devices"))
    down = [d for d, s in devices.items() if _d(s).get("state") == "unreachable"]
    if devices and len(down) == len(devices):
        h = h.worse("failing", f"all devices unreachable: {', '.join(sorted(down))}")
    elif down:
        h = h.worse("degraded", f"device(s) unreachable: {', '.join(sorted(down))}")
    for d, s in sorted(devices.items()):
        if _d(s).get("state") != "unreachable" and _d(s).get("stale"):
            h = h.worse("degraded", f"device {d}: stale values {list(_d(s)['stale'])}")
    store = _d(status.get("store"))
    if store.get("state") == "failing":
        h = h.worse("failing", "store cannot write: accepted records are held in memory")
    if store.get("evicting"):
        drops = ", ".join(f"{n} {k}" for k, n in sorted(_d(store.get("drops")).items()))
        h = h.worse("degraded", f"store full: dropping unsent records ({drops})")
    run = _d(status.get("run"))
    if run.get("unclean_start") and not run.get("recovered"):
        h = h.worse("degraded", "previous run ended without a clean stop: resending its backlog")
    for name, st in sorted(_d(status.get("stages")).items()):
        st = _d(st)
        restarts = int(st.get("restarts", 0))
        before = int(_d(_d(prev.get("stages")).get(name)).get("restarts", 0))
        if st.get("state") == "backoff" and restarts >= CRASH_LOOP_RESTARTS:
            h = h.worse("failing", f"stage {name} crash-looping ({st.get('last_error')})")
        elif restarts > before or st.get("state") == "backoff":
            h = h.worse("degraded", f"stage {name} restarted ({st.get('last_error')})")
    for name, q in sorted(_d(status.get("queues")).items()):
        dropped = int(_d(q).get("dropped", 0))
        before = int(_d(_d(prev.get("queues")).get(name)).get("dropped", 0))
        if dropped > before:
            h = h.worse("degraded", f"queue {name} dropped {dropped - before} item(s)")
    lag = float(_d(status.get("loop_lag")).get("last_s", 0.0))
    if lag >= LAG_DEGRADED_S:
        h = h.worse("degraded", f"event loop lagging ({lag:.2f}s)")
    for name, up in sorted(_d(status.get("uplink")).items()):
        state = _d(up).get("state")
        if state not in (None, "up"):
            h = h.worse("degraded", f"uplink {name} {state}")
    return h
