"""Which bulk records an uplink sends, under each asset's forwarding policy.

``DetailSelector.decide`` runs on the journal's thread (it reads raised alerts from the priority
lane as they are stored). For an asset in ``summary`` mode a feature or score record (detail) is
sent only if a raised machine alert of its asset lies within ``[ts - post_trigger_s,
ts + pre_trigger_s]``; the decision waits until the wall clock passed ``ts + pre_trigger_s +
settle_s`` (so an alert raised after the record was stored still selects it: the record stays in
the journal, unacknowledged, until then). Records not selected are acknowledged unsent and
counted by the uplink. ``snapshot`` records (raw samples) never go to a time-series uplink.
Full-mode assets are sent as before.
"""

from __future__ import annotations

import bisect

from gateway.forwarding.config import ForwardingConfig
from gateway.store.journal import Journal, Row

DETAIL_KINDS = ("feature", "score")
NEVER_SENT = ("snapshot",)


class DetailSelector:
    def __init__(self, cfg: ForwardingConfig) -> None:
        self.cfg = cfg
        self.alerts: dict[str, list[int]] = {}  # asset -> raised machine alert times (ns)
        self._alert_seq = 0
        summary = [a for a in (cfg.default, *cfg.assets.values()) if a.mode == "summary"]
        #: longest a record is held for its decision (seconds; the uplink's age allowance)
        self.hold_s = max((a.pre_trigger_s + cfg.settle_s for a in summary), default=0.0)

    def _refresh(self, journal: Journal) -> None:
        while True:
            rows = journal.read("", 10_000, "priority", after=self._alert_seq)
            if not rows:
                return
            for r in rows:
                if r.kind == "alert" and r.payload.get("state") == "raised":
                    bisect.insort(self.alerts.setdefault(r.asset, []), r.ts_ns)
            self._alert_seq = rows[-1].seq

    def near_alert(self, asset: str, ts_ns: int, pre_s: float, post_s: float) -> bool:
        times = self.alerts.get(asset, [])
        i = bisect.bisect_left(times, ts_ns - int(post_s * 1e9))
        return i < len(times) and times[i] <= ts_ns + int(pre_s * 1e9)

    def decide(
        self, journal: Journal, rows: list[Row], now_ns: int
    ) -> tuple[list[Row], list[bool], int | None]:
        """``(decided rows, send each?, wall time in ns the next one can be decided at)``: the
        rows are ``rows`` cut before the first whose decision must wait (``None``: none)."""
        self._refresh(journal)
        keep: list[bool] = []
        for i, r in enumerate(rows):
            if r.kind in NEVER_SENT:
                keep.append(False)
                continue
            a = self.cfg.for_asset(r.asset)
            if a.mode == "full" or r.kind not in DETAIL_KINDS:
                keep.append(True)
                continue
            ready_at = r.ts_ns + int((a.pre_trigger_s + self.cfg.settle_s) * 1e9)
            if now_ns < ready_at:
                return rows[:i], keep, ready_at
            keep.append(self.near_alert(r.asset, r.ts_ns, a.pre_trigger_s, a.post_trigger_s))
        return rows, keep, None
