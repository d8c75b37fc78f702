"""The gateway's OPC UA server: live asset tags, alerts as events, methods, security.

Address space (namespace ``namespace_uri``, string node ids ``Assets.<asset>.<path>``)::

    Objects/Assets/                              methods Acknowledge(alert_id),
                                                 PromoteModel(asset, version), RollbackModel(asset)
    Objects/Assets/<asset>/AnomalyScore          Double, latest non-shadow score
                          /HealthState           HealthStateEnum (Unknown, Normal, Advisory,
                                                 Warning, Alarm, Critical, SensorFault)
                          /Severity              Int32, highest active severity (0 none .. 4)
                          /ActiveAlerts          Int32 count; ActiveAlertIds String[]
                          /ModelVersion          String "<model id> <version>"
                          /LastUpdate            DateTime of the latest frame or score
                          /LastVerdict           String, the escalation endpoint's latest
                                                 verdict on a snapshot ("" until one)
                          /Channels/<ch>/Status  String NoData | Good | Uncertain | Bad | Stale
                                                 | SourceDown (always readable: status Good)
                          /Features/<ch>/<name>  Double, AnalogItemType (EURange, EngineeringUnits)
    Objects/Gateway/Health                       String ok | degraded | failing ("unknown" at first)
    Objects/Gateway/Models/<id>/ActiveVersion    String; also ShadowVersion, and Summary (JSON:
                                                 per version and role, score distribution and
                                                 would-be alert rate)
    Objects/Gateway/Uplinks/<sink>/State         String up | degraded | down ("unknown" until the
                                                 forwarder runs)
                                  /Backlog       UInt64, records not yet acknowledged by the sink
                                  /OldestAgeS    Double, age of the oldest of them (seconds)

Value status follows the data: a frame's quality (Good, Uncertain, Bad); a channel (or an asset's
score) with no update for ``stale_after_s`` turns Bad (BadNoCommunication), checked every tenth of
that period on the server's clock; a channel whose collector lost its device turns Bad
(BadNotConnected) at the next check. The ``Gateway`` folder exists when a ``status`` callable is
given (the pipeline's status snapshot: ``health.state`` and
``uplink.<sink>.{state,backlog,oldest_age_s}``, ``uplinks`` naming the sinks); it is read every
``STATUS_PERIOD_S`` on the server's clock and the values that changed are written. Alert
transitions are fired as ``AlertEventType`` events from the Server object. Tag updates of a batch
are collected (last value per node wins) and written straight into the address space
(``write_attribute_value``, no per-node client path).

Lifecycle: ``start()`` binds and serves (``ResourceUnavailableError`` if the port is taken),
``stop()`` stops the staleness and status tasks and the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.common.structures104 import new_enum
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server

from gateway.alerts.engine import AlertEngine
from gateway.core.clock import Clock
from gateway.core.errors import ResourceUnavailableError
from gateway.core.records import AlertEvent, FeatureFrame, Quality, Score, Severity
from gateway.opcua_pki import Pki
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.opcua_server.hooks import Acknowledger, ModelRegistryHook
from gateway.opcua_server.layout import AssetLayout, unece_unit_id
from gateway.opcua_server.security import (
    DiscoveryOnlyNone,
    GatewayUsers,
    RolePermissions,
    load_certificate_der,
)
from gateway.opcua_server.uatypes import (
    AttributeIds,
    ObjectIds,
    StatusCodes,
    datavalue,
    num_id,
    status,
    str_id,
)

log = logging.getLogger(__name__)

HEALTH_STATES = ("Unknown", "Normal", "Advisory", "Warning", "Alarm", "Critical", "SensorFault")
SENSOR_FAULT = HEALTH_STATES.index("SensorFault")
EVENT_SEVERITY = {
    Severity.ADVISORY: 200,
    Severity.WARNING: 400,
    Severity.ALARM: 700,
    Severity.CRITICAL: 900,
}
_GOOD = status(StatusCodes.Good)
_STATUS = {
    Quality.GOOD: _GOOD,
    Quality.UNCERTAIN: status(StatusCodes.Uncertain),
    Quality.BAD: status(StatusCodes.Bad),
}
STALE = status(StatusCodes.BadNoCommunication)
SOURCE_DOWN = status(StatusCodes.BadNotConnected)
_POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
SourceStates = Callable[[], dict[str, bool]]
GatewayStatus = Callable[[], Mapping[str, object]]
#: period of the Gateway/ status tags (seconds, server clock)
STATUS_PERIOD_S = 1.0
#: Gateway/Models/<model id>/ tags: active and shadow version, and per version and role the
#: score summary (counts, would-be alert rate, distribution) as JSON
_MODEL_TAGS = ("ActiveVersion", "ShadowVersion", "Summary")
#: Gateway/Uplinks/<sink>/ tag -> (status key, variant type)
_UPLINK_TAGS = {
    "State": ("state", ua.VariantType.String),
    "Backlog": ("backlog", ua.VariantType.UInt64),
    "OldestAgeS": ("oldest_age_s", ua.VariantType.Double),
}


def _ts(ns: int) -> ua.DateTime:
    return cast(ua.DateTime, dt.datetime.fromtimestamp(ns / 1e9, dt.UTC))


class _Tracked:
    """Staleness of one channel (or of an asset's score, channel ``""``)."""

    __slots__ = ("asset", "by_names", "channel", "nodes", "seen", "state")

    def __init__(self, asset: str, channel: str, nodes: list[ua.NodeId]) -> None:
        self.asset, self.channel, self.nodes = asset, channel, nodes
        self.seen: float | None = None  # clock.monotonic() of the latest update
        self.state = "NoData"
        #: a frame's feature names -> their nodes in that order (None: not in the layout)
        self.by_names: dict[tuple[str, ...], list[ua.NodeId | None]] = {}


class GatewayOpcUaServer:
    """Serves the asset tags of ``layout``; ``publish`` is the alert stage's publisher hook."""

    def __init__(
        self,
        cfg: OpcUaServerConfig,
        layout: Sequence[AssetLayout],
        clock: Clock,
        state_dir: Path,
        *,
        application_uri: str = "urn:pdm-gateway:server",
        sources: SourceStates | None = None,
        status: GatewayStatus | None = None,
        uplinks: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> None:
        self.cfg, self.layout, self.clock = cfg, tuple(layout), clock
        self.application_uri, self.sources = application_uri, sources
        self.status, self.uplinks = status, tuple(uplinks)
        self.model_ids = tuple(sorted(set(models)))
        self._status_task: asyncio.Task[None] | None = None
        self._status_last: dict[ua.NodeId, object] = {}
        self._status_failing = False
        self.pki = Pki(state_dir / "pki")
        self.acknowledger: Acknowledger | None = None
        self.model_registry: ModelRegistryHook | None = None
        self.users = GatewayUsers(cfg, {})
        self.server: Server | None = None
        self.ns = 0
        self.url = f"opc.tcp://{cfg.host}:{cfg.port}/pdm-gateway/"
        self.tag_writes = 0
        self.events_fired = 0
        self._ids: dict[str, ua.NodeId] = {}
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._has_data: set[str] = set()
        self._event_gen: EventGenerator | None = None
        self._stale_task: asyncio.Task[None] | None = None
        #: set after each staleness check (tests wait on it)
        self.checked = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        server = Server(user_manager=self.users)  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("pdm-gateway")
        await server.set_application_uri(self.application_uri)
        server.set_security_policy(
            [_POLICIES[m] for m in self.cfg.security_modes],
            permission_ruleset=RolePermissions(),  # type: ignore[arg-type]
        )
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.cfg.certificate_users:
            tokens.append(ua.X509IdentityToken)
            for name, cu in self.cfg.certificate_users.items():
                der = load_certificate_der(cu.certificate.read_bytes())
                self.users.certificates[der] = (name, cu.role)
        if self.cfg.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if any(m != "None" for m in self.cfg.security_modes) or self.cfg.certificate_users:
            host = "localhost" if self.cfg.host in ("0.0.0.0", "::", "") else self.cfg.host
            cert, key = self.pki.ensure_own_certificate(self.application_uri, host)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            if self.cfg.trust_clients == "pki":
                server.set_certificate_validator(self.pki.validator())
        self.ns = await server.register_namespace(self.cfg.namespace_uri)
        await self._build(server)
        try:
            await server.start()
        except OSError as exc:
            raise ResourceUnavailableError(f"OPC UA server {self.url}: {exc}") from exc
        if "None" not in self.cfg.security_modes:
            # (the list the server's connections take their policies from; its endpoints
            # were made at start, without this one)
            server._policies.append(DiscoveryOnlyNone())  # type: ignore[arg-type]
        self.server = server
        self._stale_task = asyncio.create_task(self._stale_loop(), name="opcua_server:stale")
        if self.status is not None:
            self._status_task = asyncio.create_task(self._status_loop(), name="opcua_server:status")
        log.info("OPC UA server listening on %s (%s)", self.url, ", ".join(self.cfg.security_modes))

    async def stop(self) -> None:
        for task in (self._stale_task, self._status_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def node_id(self, path: str) -> ua.NodeId:
        """NodeId of ``Assets.<asset>.<...>`` (as in the module docstring, dots for slashes)."""
        return self._ids[path]

    # -- address space ----------------------------------------------------------------------------
    def _nid(self, path: str) -> ua.NodeId:
        nid = str_id(path, self.ns)
        self._ids[path] = nid
        return nid

    async def _build(self, server: Server) -> None:
        ns = self.ns
        health = await new_enum(server, ns, "HealthStateEnum", list(HEALTH_STATES))
        self._health_type = health.nodeid
        etype = await server.create_custom_event_type(
            ns,
            "AlertEventType",
            ObjectIds.BaseEventType,
            [
                ("AlertId", ua.VariantType.String),
                ("Asset", ua.VariantType.String),
                ("Rule", ua.VariantType.String),
                ("AlertState", ua.VariantType.String),
                ("Category", ua.VariantType.String),
                ("Channel", ua.VariantType.String),
                ("ModelVersion", ua.VariantType.String),
                ("TopFeatures", ua.VariantType.String),
            ],
        )
        self._event_gen = await server.get_event_generator(etype, ObjectIds.Server)
        root = await server.nodes.objects.add_folder(self._nid("Assets"), f"{ns}:Assets")
        str_arg = ua.VariantType.String
        await root.add_method(
            self._nid("Assets.Acknowledge"), f"{ns}:Acknowledge", self._m_ack, [str_arg], []
        )
        await root.add_method(
            self._nid("Assets.PromoteModel"),
            f"{ns}:PromoteModel",
            self._m_promote,
            [str_arg, str_arg],
            [str_arg],
        )
        await root.add_method(
            self._nid("Assets.RollbackModel"),
            f"{ns}:RollbackModel",
            self._m_rollback,
            [str_arg],
            [str_arg],
        )
        items: list[ua.AddNodesItem] = []
        now = dt.datetime.now(dt.UTC)
        for a in self.layout:
            base = f"Assets.{a.name}"
            items.append(_object(self._nid(base), a.name, root.nodeid, folder=True))
            a_id = self._ids[base]
            score = self._var(
                items, a_id, base, "AnomalyScore", ua.Variant(0.0, ua.VariantType.Double)
            )
            self._var(
                items,
                a_id,
                base,
                "HealthState",
                ua.Variant(0, ua.VariantType.Int32),
                self._health_type,
            )
            self._var(items, a_id, base, "Severity", ua.Variant(0, ua.VariantType.Int32))
            self._var(items, a_id, base, "ActiveAlerts", ua.Variant(0, ua.VariantType.Int32))
            self._var(items, a_id, base, "ActiveAlertIds", ua.Variant([], ua.VariantType.String))
            model = self._var(items, a_id, base, "ModelVersion", ua.Variant("", str_arg))
            self._var(items, a_id, base, "LastUpdate", ua.Variant(now, ua.VariantType.DateTime))
            self._var(items, a_id, base, "LastVerdict", ua.Variant("", str_arg))
            self._tracked[(a.name, "")] = _Tracked(a.name, "", [score, model])
            chans = self._nid(f"{base}.Channels")
            feats = self._nid(f"{base}.Features")
            items.append(_object(chans, "Channels", a_id))
            items.append(_object(feats, "Features", a_id))
            for c in a.channels:
                cb = f"{base}.Channels.{c.name}"
                items.append(_object(self._nid(cb), c.name, chans))
                self._var(items, self._ids[cb], cb, "Status", ua.Variant("NoData", str_arg))
                fb = f"{base}.Features.{c.name}"
                items.append(_object(self._nid(fb), c.name, feats))
                nodes = []
                for fname, unit in c.features:
                    nodes.append(self._analog(items, self._ids[fb], f"{fb}.{fname}", fname, unit))
                self._tracked[(a.name, c.name)] = _Tracked(a.name, c.name, nodes)
        if self.status is not None:
            self._gateway_nodes(items, server.nodes.objects.nodeid)
        results = await server.iserver.isession.add_nodes(items)
        for r in results:
            r.StatusCode.check()
        # nothing has been received yet: every tag is Bad until its first update
        for t in self._tracked.values():
            await self._write_many(server, {n: datavalue(None, STALE) for n in t.nodes})

    def _gateway_nodes(self, items: list[ua.AddNodesItem], objects: ua.NodeId) -> None:
        items.append(_object(self._nid("Gateway"), "Gateway", objects))
        self._var(items, self._ids["Gateway"], "Gateway", "Health", ua.Variant("unknown"))
        items.append(_object(self._nid("Gateway.Uplinks"), "Uplinks", self._ids["Gateway"]))
        for sink in self.uplinks:
            base = f"Gateway.Uplinks.{sink}"
            items.append(_object(self._nid(base), sink, self._ids["Gateway.Uplinks"]))
            for name, (_, vtype) in _UPLINK_TAGS.items():
                initial = _uplink_value("unknown" if name == "State" else 0, vtype)
                self._var(items, self._ids[base], base, name, initial)
        items.append(_object(self._nid("Gateway.Models"), "Models", self._ids["Gateway"]))
        for mid in self.model_ids:
            base = f"Gateway.Models.{mid}"
            items.append(_object(self._nid(base), mid, self._ids["Gateway.Models"]))
            for name in _MODEL_TAGS:
                self._var(items, self._ids[base], base, name, ua.Variant(""))

    def _var(
        self,
        items: list[ua.AddNodesItem],
        parent: ua.NodeId,
        base: str,
        name: str,
        value: ua.Variant,
        datatype: ua.NodeId | None = None,
    ) -> ua.NodeId:
        nid = self._nid(f"{base}.{name}")
        items.append(_variable(nid, name, parent, value, datatype))
        return nid

    def _analog(
        self, items: list[ua.AddNodesItem], parent: ua.NodeId, path: str, name: str, unit: str
    ) -> ua.NodeId:
        nid = self._nid(path)
        items.append(
            _variable(
                nid,
                name,
                parent,
                ua.Variant(0.0, ua.VariantType.Double),
                typedef=num_id(ObjectIds.AnalogItemType),
            )
        )
        lo, hi = self.cfg.feature_ranges.get(name, (0.0, 0.0))
        items.append(
            _variable(
                str_id(f"{path}.EURange", self.ns),
                "EURange",
                nid,
                ua.Variant(ua.Range(lo, hi)),
                num_id(ObjectIds.Range),
                prop=True,
            )
        )
        eu = ua.EUInformation(
            NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
            UnitId=unece_unit_id(unit),
            DisplayName=ua.LocalizedText(unit),
            Description=ua.LocalizedText(unit),
        )
        items.append(
            _variable(
                str_id(f"{path}.EngineeringUnits", self.ns),
                "EngineeringUnits",
                nid,
                ua.Variant(eu),
                num_id(ObjectIds.EUInformation),
                prop=True,
            )
        )
        return nid

    # -- updates ---------------------------------------------------------------------------------
    async def publish(
        self,
        items: Sequence[FeatureFrame | Score],
        events: Sequence[AlertEvent],
        engine: AlertEngine,
    ) -> None:
        """Write the tags a batch changes (one write per node, the latest value) and fire its
        alert events."""
        server = self.server
        if server is None:
            return
        now = self.clock.now_ns()
        server_ts = _ts(now)
        mono = self.clock.monotonic()
        ids = self._ids
        writes: dict[ua.NodeId, ua.DataValue] = {}
        touched: set[str] = set()
        for item in items:
            if isinstance(item, FeatureFrame):
                t = self._tracked.get((item.asset, item.channel))
                if t is None:
                    continue
                status = _STATUS[item.quality]
                src = _ts(item.end_ts_ns)
                targets = t.by_names.get(item.names)
                if targets is None:
                    fb = f"Assets.{item.asset}.Features.{item.channel}."
                    targets = t.by_names[item.names] = [ids.get(fb + n) for n in item.names]
                for node, v in zip(targets, item.values.tolist(), strict=True):
                    if node is not None:
                        writes[node] = ua.DataValue(
                            ua.Variant(v, ua.VariantType.Double), status, src, server_ts
                        )
                q = item.quality.name.capitalize()
                if q != t.state:
                    writes[ids[f"Assets.{item.asset}.Channels.{item.channel}.Status"]] = datavalue(
                        ua.Variant(q, ua.VariantType.String), _GOOD, src, server_ts
                    )
                t.seen, t.state = mono, q
            elif not item.shadow:
                t = self._tracked.get((item.asset, ""))
                if t is None:
                    continue
                src = _ts(item.ts_ns)
                base = f"Assets.{item.asset}."
                writes[ids[base + "AnomalyScore"]] = datavalue(
                    ua.Variant(float(item.score), ua.VariantType.Double), _GOOD, src, server_ts
                )
                writes[ids[base + "ModelVersion"]] = datavalue(
                    ua.Variant(f"{item.model_id} {item.model_version}", ua.VariantType.String),
                    _GOOD,
                    src,
                    server_ts,
                )
                t.seen, t.state = mono, "Good"
            else:
                continue
            touched.add(item.asset)
            writes[ids[f"Assets.{item.asset}.LastUpdate"]] = datavalue(
                ua.Variant(server_ts, ua.VariantType.DateTime), _GOOD, server_ts, server_ts
            )
        new_assets = touched - self._has_data
        self._has_data |= touched
        for asset in {e.asset for e in events} | new_assets:
            if f"Assets.{asset}" in ids:
                self._alert_tags(asset, engine, writes, server_ts)
        await self._write_many(server, writes)
        for ev in events:
            await self._fire(ev)

    async def show_alerts(self, engine: AlertEngine) -> None:
        """Write the alert tags of every asset with an active alert in ``engine`` (at start:
        the alerts restored from the previous run show before any data or transition)."""
        server = self.server
        if server is None:
            return
        now = _ts(self.clock.now_ns())
        writes: dict[ua.NodeId, ua.DataValue] = {}
        for asset in sorted({s.rule.asset for _, s in engine.active()}):
            if f"Assets.{asset}" in self._ids:
                self._alert_tags(asset, engine, writes, now)
        await self._write_many(server, writes)

    async def publish_verdict(self, asset: str, verdict: str, ts_ns: int) -> None:
        """Show an escalation verdict on the asset's ``LastVerdict`` tag (source time
        ``ts_ns``: the snapshot's)."""
        server = self.server
        nid = self._ids.get(f"Assets.{asset}.LastVerdict")
        if server is None or nid is None:
            return
        now = _ts(self.clock.now_ns())
        dv = datavalue(ua.Variant(verdict, ua.VariantType.String), _GOOD, _ts(ts_ns), now)
        await self._write_many(server, {nid: dv})

    def _alert_tags(
        self,
        asset: str,
        engine: AlertEngine,
        writes: dict[ua.NodeId, ua.DataValue],
        ts: dt.datetime,
    ) -> None:
        active = [s.active.alert_id for _, s in engine.active(asset) if s.active is not None]
        machine = engine.max_severity(asset, "machine")
        sensor = engine.max_severity(asset, "sensor")
        if machine:
            health = 1 + machine
        elif sensor:
            health = SENSOR_FAULT
        else:
            health = 1 if asset in self._has_data else 0
        base = f"Assets.{asset}."
        I32 = ua.VariantType.Int32
        for name, var in (
            ("HealthState", ua.Variant(health, I32)),
            ("Severity", ua.Variant(max(machine, sensor), I32)),
            ("ActiveAlerts", ua.Variant(len(active), I32)),
            ("ActiveAlertIds", ua.Variant(active, ua.VariantType.String)),
        ):
            writes[self._ids[base + name]] = datavalue(var, _GOOD, ts, ts)

    async def _write_many(self, server: Server, writes: dict[ua.NodeId, ua.DataValue]) -> None:
        aspace = server.iserver.aspace
        value = AttributeIds.Value
        for nid, dv in writes.items():
            result = await aspace.write_attribute_value(nid, value, dv)
            if not result.is_good():
                log.warning("writing %s failed: %s", nid.Identifier, result)
        self.tag_writes += len(writes)

    async def _fire(self, ev: AlertEvent) -> None:
        gen = self._event_gen
        if gen is None:
            return
        e: Any = gen.event
        e.Message = ua.LocalizedText(f"{ev.asset}: {ev.rule} {ev.state.value}: {ev.message}")
        e.Severity = EVENT_SEVERITY[ev.severity]
        e.AlertId, e.Asset, e.Rule = ev.alert_id, ev.asset, ev.rule
        e.AlertState, e.Category, e.Channel = ev.state.value, ev.category, ev.channel
        e.ModelVersion = ev.model_version
        e.TopFeatures = ", ".join(f"{n} ({z:+.1f})" for n, z in ev.top_features)
        e.SourceName = ev.asset
        await gen.trigger(time_attr=_ts(ev.ts_ns))
        self.events_fired += 1

    # -- staleness -------------------------------------------------------------------------------
    async def check_stale(self) -> None:
        """Mark channels (and scores) Bad that had no update for ``stale_after_s`` or whose
        source is down."""
        server = self.server
        if server is None:
            return
        mono = self.clock.monotonic()
        down = {c for c, up in (self.sources() if self.sources else {}).items() if not up}
        writes: dict[ua.NodeId, ua.DataValue] = {}
        ts = _ts(self.clock.now_ns())
        for t in self._tracked.values():
            if t.seen is None:
                continue
            if t.channel in down:
                state, status = "SourceDown", SOURCE_DOWN
            elif mono - t.seen >= self.cfg.stale_after_s:
                state, status = "Stale", STALE
            else:
                continue
            if t.state == state:
                continue
            if t.state in ("Good", "Uncertain", "Bad"):
                log.warning("%s %s: %s", t.asset, t.channel or "score", state.lower())
            t.state = state
            for n in t.nodes:
                writes[n] = datavalue(None, status, None, ts)
            if t.channel:
                writes[self._ids[f"Assets.{t.asset}.Channels.{t.channel}.Status"]] = datavalue(
                    ua.Variant(state, ua.VariantType.String), _GOOD, ts, ts
                )
        if writes:
            await self._write_many(server, writes)

    async def _stale_loop(self) -> None:
        period = self.cfg.stale_after_s / 10
        while True:
            await self.clock.sleep(period)
            await self.check_stale()
            self.checked.set()

    # -- gateway status ---------------------------------------------------------------------------
    async def publish_status(self) -> None:
        """Write the ``Gateway/`` tags that changed since the last call (from ``status()``)."""
        server = self.server
        if server is None or self.status is None:
            return
        try:
            values = self._status_values(self.status())
        except (LookupError, TypeError, ValueError) as exc:  # a malformed snapshot
            if not self._status_failing:
                log.warning("gateway status for OPC UA unreadable: %s", exc)
            self._status_failing = True
            return
        self._status_failing = False
        changed = {n: v for n, v in values.items() if self._status_last.get(n) != v.Value}
        if changed:
            ts = _ts(self.clock.now_ns())
            self._status_last.update((n, v.Value) for n, v in changed.items())
            await self._write_many(
                server, {n: datavalue(v, _GOOD, ts, ts) for n, v in changed.items()}
            )

    def _status_values(self, snap: Mapping[str, object]) -> dict[ua.NodeId, ua.Variant]:
        values: dict[ua.NodeId, ua.Variant] = {}
        health = snap.get("health")
        if isinstance(health, Mapping) and "state" in health:
            values[self._ids["Gateway.Health"]] = ua.Variant(str(health["state"]))
        uplinks = snap.get("uplink")
        for sink in self.uplinks:
            st = uplinks.get(sink) if isinstance(uplinks, Mapping) else None
            if not isinstance(st, Mapping):
                continue  # forwarder not running yet: keep the last values
            for name, (key, vtype) in _UPLINK_TAGS.items():
                if st.get(key) is not None:
                    nid = self._ids[f"Gateway.Uplinks.{sink}.{name}"]
                    values[nid] = _uplink_value(st[key], vtype)
        lifecycle = snap.get("model_lifecycle")
        models = lifecycle.get("models") if isinstance(lifecycle, Mapping) else None
        for mid in self.model_ids:
            m = models.get(mid) if isinstance(models, Mapping) else None
            if not isinstance(m, Mapping):
                continue
            base = f"Gateway.Models.{mid}"
            values[self._ids[f"{base}.ActiveVersion"]] = ua.Variant(str(m.get("active") or ""))
            values[self._ids[f"{base}.ShadowVersion"]] = ua.Variant(str(m.get("shadow") or ""))
            summary = json.dumps(m.get("versions", {}), sort_keys=True, default=str)
            values[self._ids[f"{base}.Summary"]] = ua.Variant(summary)
        return values

    async def _status_loop(self) -> None:
        while True:
            await self.publish_status()
            await self.clock.sleep(STATUS_PERIOD_S)

    # -- methods ---------------------------------------------------------------------------------
    async def _m_ack(
        self, parent: ua.NodeId, alert_id: ua.Variant
    ) -> list[ua.Variant] | ua.StatusCode:
        if self.acknowledger is None:
            return status(StatusCodes.BadResourceUnavailable)
        try:
            await self.acknowledger.acknowledge(str(alert_id.Value), by="opcua")
        except KeyError:
            log.info("acknowledge: no active alert %r", alert_id.Value)
            return status(StatusCodes.BadNotFound)
        return []

    async def _m_promote(
        self, parent: ua.NodeId, asset: ua.Variant, version: ua.Variant
    ) -> list[ua.Variant] | ua.StatusCode:
        reg = self.model_registry
        if reg is None:  # no model registry bound in this version
            return status(StatusCodes.BadNotImplemented)
        try:
            active = await reg.promote(str(asset.Value), str(version.Value))
        except (KeyError, ValueError) as exc:
            log.warning("model registry refused: %s", exc)
            return status(StatusCodes.BadInvalidArgument)
        return [ua.Variant(active, ua.VariantType.String)]

    async def _m_rollback(
        self, parent: ua.NodeId, asset: ua.Variant
    ) -> list[ua.Variant] | ua.StatusCode:
        reg = self.model_registry
        if reg is None:
            return status(StatusCodes.BadNotImplemented)
        try:
            active = await reg.rollback(str(asset.Value))
        except (KeyError, ValueError) as exc:
            log.warning("model registry refused: %s", exc)
            return status(StatusCodes.BadInvalidArgument)
        return [ua.Variant(active, ua.VariantType.String)]


def _uplink_value(raw: object, vtype: ua.VariantType) -> ua.Variant:
    if vtype == ua.VariantType.String:
        return ua.Variant(str(raw), vtype)
    number = float(cast(float, raw))
    return ua.Variant(int(number) if vtype == ua.VariantType.UInt64 else number, vtype)


def _object(nid: ua.NodeId, name: str, parent: ua.NodeId, folder: bool = True) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    item.BrowseName = ua.QualifiedName(name, nid.NamespaceIndex)
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = parent
    item.ReferenceTypeId = num_id(ObjectIds.Organizes)
    item.TypeDefinition = num_id(ObjectIds.FolderType if folder else ObjectIds.BaseObjectType)
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.EventNotifier = 0
    item.NodeAttributes = attrs
    return item


def _variable(
    nid: ua.NodeId,
    name: str,
    parent: ua.NodeId,
    value: ua.Variant,
    datatype: ua.NodeId | None = None,
    *,
    typedef: ua.NodeId | None = None,
    prop: bool = False,
) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    # (standard properties such as EURange have browse names in namespace 0)
    item.BrowseName = ua.QualifiedName(name, ua.Int16(0) if prop else nid.NamespaceIndex)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = num_id(ObjectIds.HasProperty if prop else ObjectIds.HasComponent)
    item.TypeDefinition = typedef or num_id(
        ObjectIds.PropertyType if prop else ObjectIds.BaseDataVariableType
    )
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.DataType = datatype or num_id(value.VariantType.value)
    attrs.Value = value
    if isinstance(value.Value, list):
        attrs.ValueRank = ua.ValueRank.OneDimension
        attrs.ArrayDimensions = [0]
    else:
        attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    return item
