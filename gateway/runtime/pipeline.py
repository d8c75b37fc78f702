"""Build the pipeline from config, run it under supervision, and drain it in order.

    collectors --samples--> dsp --frames--> inference --scored--> alerts --records--> store
    writer --> journal (SQLite)
    journal --> uplink forwarder (InfluxDB), when ``[uplink.influxdb]`` is configured
    journal --> escalation (snapshots to HTTPS), when ``[forwarding.escalation]`` is configured

``[forwarding]`` (``gateway.forwarding``): the ``samples`` queue is tapped (bytes collected, raw
rings for snapshots), the store writer journals summaries and snapshots derived from each batch,
and the uplink sends bulk records by each asset's policy.

Without models (``models.assets`` empty) DSP writes straight to ``scored``; so it does with
``models.inline`` (the default), scoring each batch of frames on its own worker thread right
after their features (no ``frames`` queue, no inference task). The alert stage also
updates the OPC UA server when it is enabled, and hands raised/cleared alerts to the action
runner (which writes its audit records to ``records``).

Shutdown order (``stop``): collectors are cancelled (no new data); then each queue is closed in
chain order and the stage reading it drains it and returns (DSP, inference, alerts, actions,
store writer); finally the journal is closed. The whole drain is bounded by
``runtime.shutdown_deadline_s``; past it the remaining stages are cancelled and what was left in
their queues is reported. The uplink forwarder is cancelled once the store has drained (what it
has not sent stays in the journal for the next run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.alerts.stage import AlertStage
from gateway.collectors.modbus.collector import ModbusCollector
from gateway.config.schema import GatewayConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.records import (
    ActionRecord,
    AlertEvent,
    FeatureFrame,
    Reading,
    SampleBlock,
    Score,
)
from gateway.dsp.stage import DspStage
from gateway.forwarding.hub import ForwardingHub
from gateway.forwarding.ring import TappedQueue
from gateway.inference.lifecycle import ModelController, feature_check
from gateway.inference.stage import InferenceStage, load_models
from gateway.runtime.health import assess
from gateway.runtime.http import HttpEndpoint
from gateway.runtime.looplag import LoopLagMonitor
from gateway.runtime.queues import BoundedQueue
from gateway.runtime.runmark import RunMarker
from gateway.runtime.supervisor import Supervisor
from gateway.runtime.threads import limit_native_threads
from gateway.store.access import JournalAccess
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter

if TYPE_CHECKING:  # imported where used: a gateway without them does not load their libraries
    from gateway.alerts.actions import ActionRunner
    from gateway.collectors.opcua.collector import OpcUaCollector
    from gateway.forwarding.escalation import Escalator
    from gateway.opcua_server.server import GatewayOpcUaServer
    from gateway.uplink.forwarder import InfluxForwarder

log = logging.getLogger(__name__)

#: drops and restarts count against health for this long (seconds)
HEALTH_WINDOW_S = 60.0


Record = FeatureFrame | Score | AlertEvent | ActionRecord


def opcua_collectors(
    cfg: GatewayConfig, samples: BoundedQueue[SampleBlock | Reading], clock: Clock
) -> list[OpcUaCollector]:
    """One collector per ``[devices.opcua.<id>]``; they share the PKI under state_dir/pki."""
    if not cfg.devices.opcua:
        return []
    from gateway.collectors.opcua.collector import OpcUaCollector
    from gateway.opcua_pki import Pki, default_application_uri

    pki = Pki(cfg.gateway.state_dir / "pki")
    uri = default_application_uri(cfg.gateway.name)
    return [
        OpcUaCollector(name, dev, dict(cfg.channels), samples, clock, pki, uri)
        for name, dev in cfg.devices.opcua.items()
    ]


class Pipeline:
    """The running gateway: ``start()`` opens the store and starts all stages, ``stop()`` drains."""

    def __init__(
        self,
        cfg: GatewayConfig,
        clock: Clock | None = None,
        on_frame: Callable[[FeatureFrame], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        q = cfg.runtime.queues
        #: forwarding policy: raw tap on ``samples``, summaries/snapshots, byte accounting
        self.forwarding = ForwardingHub(
            cfg.forwarding,
            {a: list(asset.channels) for a, asset in cfg.assets.items()},
            {ch for ch, c in cfg.channels.items() if c.is_waveform},
        )
        self.samples: BoundedQueue[SampleBlock | Reading] = TappedQueue(
            "samples", q.samples.size, q.samples.when_full, self.forwarding.tap
        )
        self.records: BoundedQueue[Record] = BoundedQueue(
            "records", q.records.size, q.records.when_full
        )
        #: frames and scores on their way to the alert stage (same bounds as records)
        self.scored: BoundedQueue[FeatureFrame | Score] = BoundedQueue(
            "scored", q.records.size, q.records.when_full
        )
        self.inference: InferenceStage | None = None
        #: the model lifecycle (registry changes, swaps, shadow runs, automatic rollback)
        self.models: ModelController | None = None
        self._models_task: asyncio.Task[None] | None = None
        self.frames: BoundedQueue[FeatureFrame] | None = None
        if cfg.models.assets:
            rollbacks: list[tuple[str, str, str, str]] = []
            models = load_models(
                cfg.models,
                cfg.gateway.state_dir,
                dict(cfg.channels),
                dict(cfg.assets),
                cfg.dsp,
                rollbacks,
            )
            frames: BoundedQueue[FeatureFrame] = BoundedQueue(
                "frames", q.frames.size, q.frames.when_full
            )
            # inline (``models.inline``): the DSP stage scores its batches, no frames queue
            self.frames = None if cfg.models.inline else frames
            self.inference = InferenceStage(models, frames, self.scored, cfg.models.batch)
            self.models = ModelController(
                cfg.models,
                cfg.gateway.state_dir,
                self.inference,
                self.clock,
                feature_check(cfg.models, dict(cfg.channels), dict(cfg.assets), cfg.dsp),
            )
            for rollback in rollbacks:  # done while loading: counted and reported here
                self.models.report(*rollback)
        self.collectors: list[ModbusCollector | OpcUaCollector] = [
            ModbusCollector(name, dev, dict(cfg.channels), self.samples, self.clock)
            for name, dev in cfg.devices.modbus.items()
        ]
        self.collectors += opcua_collectors(cfg, self.samples, self.clock)
        self.dsp = DspStage(
            cfg.dsp,
            dict(cfg.channels),
            dict(cfg.assets),
            self.samples,
            self.frames if self.frames is not None else self.scored,  # type: ignore[arg-type]
            self.clock,
            on_frame,
        )
        if self.inference is not None and self.frames is None:
            self.dsp.post = self.inference.proc.process
            self.dsp.after_emit = self.inference.emitted
        self.alerts = AlertStage(
            cfg.alerts,
            dict(cfg.assets),
            self.scored,
            self.records,
            self.clock,
            self._sources,
            state_path=cfg.gateway.state_dir / "alerts-active.json",
        )
        self.actions: ActionRunner | None = None
        if any(r.action is not None for r in cfg.alerts.rules.values()):
            from gateway.alerts.actions import ActionRunner

            self.actions = ActionRunner(
                dict(cfg.alerts.rules),
                cfg.gateway.state_dir / "alert-actions.json",
                self.records,  # type: ignore[arg-type]  # (it puts ActionRecords only)
                self.clock,
            )
            self.alerts.listeners.append(self.actions)
        self.opcua_server: GatewayOpcUaServer | None = None
        if cfg.opcua_server.enabled:
            from gateway.opcua_server.layout import layout_from_config
            from gateway.opcua_server.server import GatewayOpcUaServer

            layout = layout_from_config(dict(cfg.assets), dict(cfg.channels), cfg.dsp)
            self.opcua_server = GatewayOpcUaServer(
                cfg.opcua_server,
                layout,
                self.clock,
                cfg.gateway.state_dir,
                application_uri=f"urn:{cfg.gateway.name}:pdm-gateway",
                sources=self._sources,
                status=self.status,
                uplinks=[cfg.uplink.influxdb.name] if cfg.uplink.influxdb else [],
                models=list(cfg.models.assets.values()),
            )
            self.opcua_server.acknowledger = self.alerts
            self.alerts.publishers.append(self.opcua_server)
            if self.models is not None:
                self.opcua_server.model_registry = self.models
        if self.models is not None:
            self.models.out = self.records  # type: ignore[assignment]  # rollback AlertEvents
        self.supervisor = Supervisor(self.clock, cfg.runtime.restart, cfg.runtime.healthy_after_s)
        self.loop_lag = LoopLagMonitor(self.clock)
        self._lag_task: asyncio.Task[None] | None = None
        self.journal: Journal | None = None
        self.store: StoreWriter | None = None
        self.uplink: InfluxForwarder | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self.escalator: Escalator | None = None
        self._escalator_task: asyncio.Task[None] | None = None
        self._collector_tasks: list[asyncio.Task[None]] = []
        self._dsp_task: asyncio.Task[None] | None = None
        self._inference_task: asyncio.Task[None] | None = None
        self._alerts_task: asyncio.Task[None] | None = None
        self._actions_task: asyncio.Task[None] | None = None
        self._store_task: asyncio.Task[None] | None = None
        self.http: HttpEndpoint | None = None
        #: whether the previous run stopped cleanly (a marker file while running)
        self.run_marker = RunMarker(cfg.gateway.state_dir / "running")
        if cfg.runtime.http.enabled:
            url_file = cfg.gateway.state_dir / "http.url"
            self.http = HttpEndpoint(cfg.runtime.http, self.status, url_file)
        #: snapshot that health compares against (drops/restarts "since then"), refreshed
        #: once it is older than HEALTH_WINDOW_S
        self._baseline: tuple[float, dict[str, object]] | None = None
        self._health_state = "ok"

    async def start(self) -> None:
        """Open the journal (``ResourceUnavailableError`` if impossible) and start all stages."""
        limit_native_threads()
        influx = self.cfg.uplink.influxdb
        self.journal = Journal(
            self.cfg.store_path(),
            self.cfg.store.synchronous,
            self.cfg.store.bounds(),
            sinks=[influx.name] if influx else [],
        )
        self.run_marker.begin()
        escalation = self.cfg.forwarding.escalation
        if escalation is not None:  # its own cursor: the bounds wait for it like for the uplink
            self.journal.sinks = (*self.journal.sinks, escalation.name)
            self.journal.bulk_only = frozenset({escalation.name})  # (it reads no alerts)
        access = JournalAccess(self.journal)
        if self.opcua_server is not None:
            await self.opcua_server.start()
            await self.opcua_server.show_alerts(self.alerts.engine)  # (restored ones)
        self.store = StoreWriter(self.cfg.store, access, self.records, self.clock)
        self.store.deriver = self.forwarding
        self._store_task = self.supervisor.start(self.store)
        if influx is not None:
            from gateway.uplink.forwarder import InfluxForwarder

            self.uplink = InfluxForwarder(influx, access, self.clock)
            self.uplink.selector = self.forwarding.selector
            self._uplink_task = self.supervisor.start(self.uplink)
        if escalation is not None:
            from gateway.forwarding.escalation import Escalator

            self.escalator = Escalator(escalation, self.cfg.forwarding, access, self.clock)
            if self.opcua_server is not None:
                self.escalator.listeners.append(self.opcua_server)
            self._escalator_task = self.supervisor.start(self.escalator)
        if self.actions is not None:
            self.actions.reconcile(
                {
                    name: (st.active.alert_id, st.active.severity)
                    for name, st in self.alerts.engine.active()
                    if st.active is not None
                }
            )
            self._actions_task = self.supervisor.start(self.actions)
        self._alerts_task = self.supervisor.start(self.alerts)
        if self.inference is not None and self.frames is not None:  # (else DSP scores)
            self._inference_task = self.supervisor.start(self.inference)
        if self.models is not None:
            self._models_task = self.supervisor.start(self.models)
        self._dsp_task = self.supervisor.start(self.dsp)
        self._collector_tasks = [self.supervisor.start(c) for c in self.collectors]
        self._lag_task = self.supervisor.start(self.loop_lag)
        if self.http is not None:
            await self.http.start()
        log.info(
            "gateway %s started: %d device(s), %d channel(s), store %s",
            self.cfg.gateway.name,
            len(self.collectors),
            len(self.cfg.channels),
            self.cfg.store_path(),
        )

    def _queues(self) -> list[BoundedQueue[object]]:
        qs = (self.samples, self.frames, self.scored, self.records)
        return [q for q in qs if q is not None]  # type: ignore[misc]

    async def stop(self) -> bool:
        """Drain in order within the deadline. Returns True if the drain completed."""
        deadline = self.cfg.runtime.shutdown_deadline_s
        complete = True
        if self.http is not None:
            await self.http.stop()
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self._models_task is not None:
            self._models_task.cancel()
        try:
            async with asyncio.timeout(deadline):
                for t in self._collector_tasks:
                    t.cancel()
                await asyncio.gather(*self._collector_tasks, return_exceptions=True)
                await self.samples.close()
                if self._dsp_task:
                    await self._dsp_task
                if self.frames is not None:
                    await self.frames.close()
                if self._inference_task:
                    await self._inference_task
                await self.scored.close()
                if self._alerts_task:
                    await self._alerts_task
                if self.actions is not None:
                    await self.actions.inp.close()
                if self._actions_task:
                    await self._actions_task
                await self.records.close()
                if self._store_task:
                    await self._store_task
        except TimeoutError:
            complete = False
            left = sum(len(q) for q in self._queues())
            left += self.store.pending if self.store else 0
            log.warning(
                "shutdown deadline (%.1fs) passed: %d queued item(s) not processed", deadline, left
            )
            stages = (
                self._dsp_task,
                self._inference_task,
                self._alerts_task,
                self._actions_task,
                self._store_task,
            )
            rest = [t for t in (*self._collector_tasks, *stages) if t]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        if self._uplink_task is not None:
            self._uplink_task.cancel()
            await asyncio.gather(self._uplink_task, return_exceptions=True)
        if self._escalator_task is not None:
            self._escalator_task.cancel()
            await asyncio.gather(self._escalator_task, return_exceptions=True)
        if self.opcua_server is not None:
            await self.opcua_server.stop()
        if self.store:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        self.run_marker.end()
        log.info(
            "gateway stopped (%s); %d record(s) written this run",
            "drained" if complete else "deadline passed",
            self.store.written if self.store else 0,
        )
        return complete

    def _sources(self) -> dict[str, bool]:
        """Channel -> whether its collector's device answers (for sensor alerts)."""
        return {ch: c.state != "unreachable" for c in self.collectors for _, ch in c.cfg.channels()}

    def status(self) -> dict[str, object]:
        """Snapshot of every stage's state and counters, plus the overall ``health``."""
        snap: dict[str, object] = {
            "gateway": self.cfg.gateway.name,
            "stages": self.supervisor.status(),
            "devices": {c.device_id: c.status() for c in self.collectors},
            "queues": {q.name: q.stats() for q in self._queues()},
            "dsp": self.dsp.status(),
            "inference": self.inference.status() if self.inference else {},
            "alerts": self.alerts.status(),
            "model_lifecycle": self.models.status() if self.models else {},
            "loop_lag": self.loop_lag.status(),
            "store": self.store.status() if self.store else {},
            "uplink": {self.uplink.cfg.name: self.uplink.status()} if self.uplink else {},
            "escalation": self.escalator.status() if self.escalator else {},
            "forwarding": self.forwarding.status(
                self.uplink.sent_bytes if self.uplink else {},
                self.escalator.escalated_bytes if self.escalator else {},
                self.uplink.skipped_by_asset if self.uplink else {},
            ),
            "run": self.run_marker.status(
                self.uplink is None or (self.uplink.idle.is_set() and self.uplink.state == "up")
            ),
        }
        now = self.clock.monotonic()
        if self._baseline is None or now - self._baseline[0] >= HEALTH_WINDOW_S:
            self._baseline = (now, snap)
        health = assess(snap, self._baseline[1])
        if health.state != self._health_state:
            logf = log.info if health.state == "ok" else log.warning
            logf("health %s: %s", health.state, "; ".join(health.reasons) or "all stages ok")
            self._health_state = health.state
        snap["health"] = health.as_dict()
        return snap
