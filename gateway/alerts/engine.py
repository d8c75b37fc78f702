"""The alarm state machine: pure and clock-driven (time only comes in through its arguments).

One ``RuleState`` per configured rule (a rule names one asset). Inputs are feature frames,
scores, clock ticks and source (collector) states; outputs are ``AlertEvent`` transitions:

    (inactive) --raise--> RAISED --acknowledge--> ACKNOWLEDGED --clear--> CLEARED
                             \\------------------------------------clear--> CLEARED (unacknowledged)

Delays: a rule raises when its value reached the raise level in ``on_n`` of the last ``on_m``
windows evaluated while inactive, and clears when it was below the clear level in ``off_n`` of
the last ``off_m`` windows evaluated while active; both histories restart at each transition.
Stale ticks and a disconnected source raise a sensor alert at once (the delay is the timeout).
Alert ids are ``<rule>@<raise timestamp ns>``: unique and stable across restarts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.alerts import iso20816
from gateway.alerts.baseline import BaselineBank
from gateway.alerts.config import AlertRule, AlertsConfig
from gateway.config.plant import Asset
from gateway.core.records import AlertEvent, AlertState, FeatureFrame, Quality, Score, Severity


class UnknownAlert(KeyError):
    """No active alert has this id."""


@dataclass
class Active:
    alert_id: str
    raised_ns: int
    severity: Severity
    acknowledged_ns: int | None = None
    acknowledged_by: str = ""


@dataclass
class RuleState:
    rule: AlertRule
    hits: deque[bool]
    oks: deque[bool]
    active: Active | None = None
    last_seen_ns: int | None = None
    prev_value: float | None = None
    last_value: float = float("nan")
    model: tuple[str, str] = ("", "")
    #: what the last input showed (``None``: a score rule's ``last_value``, formatted on demand)
    detail: str | None = ""
    extra: dict[str, float] = field(default_factory=dict)


def _detail(st: RuleState) -> str:
    """``st.detail``, made from the last score if it is not made yet."""
    if st.detail is None:
        st.detail = f"score {st.last_value:.3g}"
    return st.detail


def _severity(rule: AlertRule) -> Severity:
    return Severity[rule.severity_name.upper()]


class AlertEngine:
    """Evaluates every rule; each method returns the transitions it caused, in order."""

    def __init__(self, cfg: AlertsConfig, assets: dict[str, Asset]) -> None:
        self.cfg, self.assets = cfg, assets
        self.states = {
            name: RuleState(r, deque(maxlen=r.on_m), deque(maxlen=r.off_m))
            for name, r in cfg.rules.items()
        }
        self._by_asset: dict[str, list[str]] = {}
        #: by asset: (name, state, channel, raise level, clear level) of each score rule
        self._score_rules: dict[str, list[tuple[str, RuleState, str | None, float, float]]] = {}
        self._frame_rules: dict[str, list[str]] = {}  # by asset: every rule but score rules
        self._machine: dict[str, list[RuleState]] = {}  # by asset: its machine rules' states
        for name, r in cfg.rules.items():
            self._by_asset.setdefault(r.asset, []).append(name)
            if r.source == "score":
                hi, lo = r.levels
                plan = (name, self.states[name], r.channel, hi, lo)
                self._score_rules.setdefault(r.asset, []).append(plan)
            else:
                self._frame_rules.setdefault(r.asset, []).append(name)
            if r.category == "machine":
                self._machine.setdefault(r.asset, []).append(self.states[name])
        self.baseline = BaselineBank(cfg.baseline_alpha, cfg.baseline_min_windows)
        self.models: dict[str, tuple[str, str]] = {}
        self._source_down: set[str] = set()

    # -- queries -------------------------------------------------------------------------------
    def active(self, asset: str | None = None) -> list[tuple[str, RuleState]]:
        """Active alerts as ``(rule name, state)``, optionally of one asset."""
        if asset is None:
            return [(n, s) for n, s in self.states.items() if s.active is not None]
        return [
            (n, s)
            for n in self._by_asset.get(asset, ())
            if (s := self.states[n]).active is not None
        ]

    def max_severity(self, asset: str, category: str = "machine") -> int:
        """Highest severity of the asset's active alerts of a category, 0 if none."""
        sev = [
            int(s.active.severity)
            for _, s in self.active(asset)
            if s.active is not None and s.rule.category == category
        ]
        return max(sev, default=0)

    # -- inputs ----------------------------------------------------------------------------------
    def on_score(self, score: Score) -> list[AlertEvent]:
        if score.shadow:
            return []
        m = self.models.get(score.asset)
        if m is None or m[0] != score.model_id or m[1] != score.model_version:
            m = self.models[score.asset] = (score.model_id, score.model_version)
        out: list[AlertEvent] = []
        x = score.score
        for name, st, channel, hi, lo in self._score_rules.get(score.asset, ()):
            if channel is not None and channel != score.channel:
                continue
            st.model = m
            st.last_value = x
            st.detail = None  # ("score <x>", made when needed)
            ev = self._step(name, st, x >= hi, x < lo, score.ts_ns)
            if ev:
                out += ev
        return out

    def on_frame(self, frame: FeatureFrame) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        ts = frame.end_ts_ns
        names = self._frame_rules.get(frame.asset, ())
        for name in names:
            st = self.states[name]
            r = st.rule
            if r.channel != frame.channel:
                continue
            if r.source == "sensor":
                out += self._sensor(name, st, frame)
                continue
            feature = r.feature if r.source == "feature" else iso20816.VELOCITY_FEATURE
            if frame.quality == Quality.BAD or feature not in frame.names:
                continue
            x = float(frame.values[frame.names.index(feature)])
            st.last_value = x
            if r.source == "feature":
                hi, lo = r.levels
                st.detail = f"{frame.channel}.{feature} {x:.4g}"
            else:
                mc = self.assets[r.asset].machine_class
                hi = iso20816.lower_boundary(mc, r.zone)
                lo = hi * (1.0 - r.hysteresis)
                st.detail = (
                    f"{frame.channel} velocity {x:.3g} mm/s in zone "
                    f"{iso20816.zone(mc, x)} ({mc}, zone {r.zone} from {hi} mm/s)"
                )
            out += self._step(name, st, x >= hi, x < lo, ts)
        if frame.quality is Quality.GOOD and frame.asset in self.assets:
            learn = True  # (not while the asset has an active machine alert)
            for st in self._machine.get(frame.asset, ()):
                if st.active is not None:
                    learn = False
                    break
            self.baseline.observe(frame, learn)
        return out

    def on_items(self, items: Iterable[FeatureFrame | Score]) -> list[AlertEvent]:
        """``on_frame``/``on_score`` of each item in order; the transitions of all. Items no
        rule looks at, and scores that cannot transition, take a shorter path."""
        out: list[AlertEvent] = []
        frame_rules, score_rules, machine = self._frame_rules, self._score_rules, self._machine
        assets, models, observe = self.assets, self.models, self.baseline.observe
        good = Quality.GOOD
        for it in items:
            asset = it.asset
            if type(it) is Score:
                if it.shadow:
                    continue
                mid, ver = it.model_id, it.model_version
                m = models.get(asset)
                if m is None or m[0] != mid or m[1] != ver:
                    m = models[asset] = (mid, ver)
                x = it.score
                for name, st, channel, hi, lo in score_rules.get(asset, ()):
                    if channel is not None and channel != it.channel:
                        continue
                    st.model = m
                    st.last_value = x
                    st.detail = None  # ("score <x>", made when needed)
                    if st.active is None and x < hi:  # (no hit: no transition)
                        st.hits.append(False)
                    else:
                        ev = self._step(name, st, x >= hi, x < lo, it.ts_ns)
                        if ev:
                            out += ev
            elif type(it) is FeatureFrame and asset not in frame_rules:
                if it.quality is good and asset in assets:
                    learn = True  # (not while the asset has an active machine alert)
                    for st in machine.get(asset, ()):
                        if st.active is not None:
                            learn = False
                            break
                    observe(it, learn)
            elif isinstance(it, FeatureFrame):
                ev = self.on_frame(it)
                if ev:
                    out += ev
            else:
                ev = self.on_score(it)
                if ev:
                    out += ev
        return out

    def tick(self, now_ns: int) -> list[AlertEvent]:
        """Check stale channels: a ``stale`` rule raises once no window arrived for its timeout."""
        out: list[AlertEvent] = []
        for name, st in self.states.items():
            r = st.rule
            if r.condition != "stale":
                continue
            if st.last_seen_ns is None:
                st.last_seen_ns = now_ns  # the timeout runs from the first tick
            elif st.active is None and now_ns - st.last_seen_ns >= r.stale_after_s * 1e9:
                st.detail = f"{r.channel}: no data for {(now_ns - st.last_seen_ns) / 1e9:.3g} s"
                out += self._raise(name, st, now_ns)
        return out

    def set_source(self, channel: str, connected: bool, now_ns: int) -> list[AlertEvent]:
        """The collector feeding ``channel`` lost (or regained) its device. A loss raises the
        channel's ``disconnected`` alert at once; it clears on good windows like any other."""
        if connected:
            self._source_down.discard(channel)
            return []
        if channel in self._source_down:
            return []
        self._source_down.add(channel)
        out: list[AlertEvent] = []
        for name, st in self.states.items():
            if st.rule.condition == "disconnected" and st.rule.channel == channel:
                if st.active is None:
                    st.detail = f"{channel}: source device unreachable"
                    out += self._raise(name, st, now_ns)
                st.oks.clear()
        return out

    def is_acknowledged(self, alert_id: str) -> bool:
        """True if ``alert_id`` is active and already acknowledged."""
        return any(
            s.active.alert_id == alert_id and s.active.acknowledged_ns is not None
            for _, s in self.active()
            if s.active is not None
        )

    def acknowledge(self, alert_id: str, now_ns: int, by: str = "") -> AlertEvent:
        """Acknowledge an active alert (``UnknownAlert`` if no active alert has that id); a
        second acknowledgement returns the same event without a new transition."""
        for name, st in self.states.items():
            a = st.active
            if a is not None and a.alert_id == alert_id:
                if a.acknowledged_ns is None:
                    a.acknowledged_ns, a.acknowledged_by = now_ns, by
                return self._event(
                    name,
                    st,
                    AlertState.ACKNOWLEDGED,
                    a.acknowledged_ns,
                    f"acknowledged{' by ' + a.acknowledged_by if a.acknowledged_by else ''}",
                )
        raise UnknownAlert(alert_id)

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, object]]:
        """The active alerts by rule, as plain data (``restore`` takes it back)."""
        out: dict[str, dict[str, object]] = {}
        for name, st in self.states.items():
            a = st.active
            if a is not None:
                out[name] = {
                    "alert_id": a.alert_id,
                    "raised_ns": a.raised_ns,
                    "severity": int(a.severity),
                    "acknowledged_ns": a.acknowledged_ns,
                    "acknowledged_by": a.acknowledged_by,
                    "model": list(st.model),
                    "detail": _detail(st),
                }
        return out

    def restore(self, data: dict[str, dict[str, object]]) -> list[str]:
        """Make the alerts of a ``snapshot`` active again (a restarted gateway carries on with
        them: no second raise, and they clear like any other); returns the rules restored.
        Entries of rules no longer configured are skipped. All or nothing: a malformed entry
        raises ``ValueError`` before any alert is restored."""
        parsed: list[tuple[str, RuleState, Active, tuple[str, str], str]] = []
        for name, a in data.items():
            st = self.states.get(name)
            if st is None:
                continue
            try:
                ack = a["acknowledged_ns"]
                model = a.get("model") or ["", ""]
                assert isinstance(model, list)
                active = Active(
                    str(a["alert_id"]),
                    int(a["raised_ns"]),  # type: ignore[call-overload]
                    Severity(int(a["severity"])),  # type: ignore[call-overload]
                    None if ack is None else int(ack),  # type: ignore[call-overload]
                    str(a.get("acknowledged_by", "")),
                )
                parsed.append(
                    (name, st, active, (str(model[0]), str(model[1])), str(a.get("detail", "")))
                )
            except (KeyError, TypeError, ValueError, AssertionError, IndexError) as exc:
                raise ValueError(f"rule {name}: {exc!r}") from None
        for _, st, active, model_ids, detail in parsed:
            st.active, st.model, st.detail = active, model_ids, detail
            st.hits.clear()
            st.oks.clear()
        return [name for name, *_ in parsed]

    # -- internals -------------------------------------------------------------------------------
    def _sensor(self, name: str, st: RuleState, frame: FeatureFrame) -> list[AlertEvent]:
        r = st.rule
        v = dict(zip(frame.names, frame.values, strict=True))
        ts = frame.end_ts_ns
        cond = r.condition
        if cond == "stale":
            st.last_seen_ns = frame.gateway_ts_ns
            hit, ok = frame.quality == Quality.UNCERTAIN, frame.quality == Quality.GOOD
            st.detail = f"{frame.channel}: data {frame.quality.name.lower()}"
        elif cond == "disconnected":
            if frame.channel in self._source_down and frame.quality == Quality.GOOD:
                self._source_down.discard(frame.channel)
            hit, ok = frame.quality == Quality.BAD, frame.quality == Quality.GOOD
            st.detail = f"{frame.channel}: quality {frame.quality.name.lower()}"
        elif frame.quality == Quality.BAD:
            return []
        elif cond == "stuck":
            if "peak_to_peak" in v:
                x = float(v["peak_to_peak"])
            else:
                x = abs(float(v["value"]) - st.prev_value) if st.prev_value is not None else 1e300
                st.prev_value = float(v["value"])
            hit = x <= r.stuck_tolerance
            ok = not hit
            st.detail = f"{frame.channel}: signal stuck (change {x:.3g})"
        else:  # saturated
            assert r.saturation_level is not None
            x = float(v["peak"]) if "peak" in v else abs(float(v["value"]))
            hit = x >= r.saturation_level
            ok = not hit
            st.detail = f"{frame.channel}: {x:.4g} at saturation ({r.saturation_level:g})"
        return self._step(name, st, hit, ok, ts)

    def _step(self, name: str, st: RuleState, hit: bool, ok: bool, ts: int) -> list[AlertEvent]:
        # (a history is below its count before each append: every append that reaches it
        # transitions, and transitions clear both; so only a hit or an ok can reach it)
        if st.active is None:
            st.hits.append(hit)
            if hit and sum(st.hits) >= st.rule.on_n:
                return self._raise(name, st, ts)
        else:
            st.oks.append(ok)
            if ok and sum(st.oks) >= st.rule.off_n:
                return self._clear(name, st, ts)
        return []

    def _raise(self, name: str, st: RuleState, ts: int) -> list[AlertEvent]:
        st.hits.clear()
        st.oks.clear()
        st.active = Active(f"{name}@{ts}", ts, _severity(st.rule))
        if st.rule.source != "score":
            st.model = self.models.get(st.rule.asset, ("", ""))
        top: tuple[tuple[str, float], ...] = ()
        if st.rule.category == "machine" and self.cfg.top_features:
            top = self.baseline.top(st.rule.asset, self.cfg.top_features)
        return [self._event(name, st, AlertState.RAISED, ts, f"raised: {_detail(st)}", top)]

    def _clear(self, name: str, st: RuleState, ts: int) -> list[AlertEvent]:
        assert st.active is not None
        acked = st.active.acknowledged_ns is not None
        ev = self._event(
            name,
            st,
            AlertState.CLEARED,
            ts,
            f"cleared{'' if acked else ' unacknowledged'}: {_detail(st)}",
        )
        st.active = None
        st.hits.clear()
        st.oks.clear()
        return [ev]

    def _event(
        self,
        name: str,
        st: RuleState,
        state: AlertState,
        ts: int,
        message: str,
        top: tuple[tuple[str, float], ...] = (),
    ) -> AlertEvent:
        assert st.active is not None
        model_id, version = st.model
        if model_id:
            message += f" (model {model_id} {version})"
        return AlertEvent(
            alert_id=st.active.alert_id,
            asset=st.rule.asset,
            rule=name,
            state=state,
            severity=st.active.severity,
            ts_ns=ts,
            message=message,
            model_version=version,
            top_features=top,
            category=st.rule.category,
            channel=st.rule.channel or "",
        )
