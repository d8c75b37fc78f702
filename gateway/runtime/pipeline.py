"""Build the pipeline from config, run it under supervision, and drain it in order.

    collectors --samples queue--> dsp --records queue--> store writer --> journal (SQLite)

Shutdown order (``stop``): collectors are cancelled (no new data), the samples queue is closed and
the DSP stage drains it, then the records queue is closed and the store writer writes everything
still queued and returns; finally the journal is closed. The whole drain is bounded by
``runtime.shutdown_deadline_s``; past it the remaining stages are cancelled and what was left in
their queues is reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.config.schema import GatewayConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame, Reading, SampleBlock
from gateway.dsp.stage import DspStage
from gateway.runtime.looplag import LoopLagMonitor
from gateway.runtime.queues import BoundedQueue
from gateway.runtime.supervisor import Supervisor
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter

log = logging.getLogger(__name__)


def unsupported_sections(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """Configured features this version cannot run, as ``(key path, reason)``."""
    out: list[tuple[str, str]] = []
    return out


def ignored_sections(cfg: GatewayConfig) -> list[str]:
    """Sections that validate but do nothing yet in this version (warned about at start)."""
    out = []
    if cfg.uplink.influxdb is not None:
        out.append(
            "uplink.influxdb: forwarding is not available in this version; "
            "records stay in the local store"
        )
    if cfg.opcua_server.enabled:
        out.append("opcua_server: the OPC UA server is not available in this version")
    if cfg.alerts.rules:
        out.append("alerts.rules: alert evaluation is not available in this version")
    if cfg.models.assets:
        out.append("models.assets: inference is not available in this version")
    return out


def opcua_collectors(
    cfg: GatewayConfig, samples: BoundedQueue[SampleBlock | Reading], clock: Clock
) -> list[OpcUaCollector]:
    """One collector per ``[devices.opcua.<id>]``; they share the PKI under state_dir/pki."""
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
        errors = unsupported_sections(cfg)
        if errors:
            raise ConfigError(errors)
        self.cfg = cfg
        self.clock = clock or SystemClock()
        q = cfg.runtime.queues
        self.samples: BoundedQueue[SampleBlock | Reading] = BoundedQueue(
            "samples", q.samples.size, q.samples.when_full
        )
        self.records: BoundedQueue[FeatureFrame] = BoundedQueue(
            "records", q.records.size, q.records.when_full
        )
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
            self.records,
            self.clock,
            on_frame,
        )
        self.supervisor = Supervisor(self.clock, cfg.runtime.restart, cfg.runtime.healthy_after_s)
        self.loop_lag = LoopLagMonitor(self.clock)
        self._lag_task: asyncio.Task[None] | None = None
        self.journal: Journal | None = None
        self.store: StoreWriter | None = None
        self._collector_tasks: list[asyncio.Task[None]] = []
        self._dsp_task: asyncio.Task[None] | None = None
        self._store_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the journal (``ResourceUnavailableError`` if impossible) and start all stages."""
        for warning in ignored_sections(self.cfg):
            log.warning("%s", warning)
        self.journal = Journal(self.cfg.store_path(), self.cfg.store.synchronous)
        self.store = StoreWriter(self.cfg.store, self.journal, self.records, self.clock)
        self._store_task = self.supervisor.start(self.store)
        self._dsp_task = self.supervisor.start(self.dsp)
        self._collector_tasks = [self.supervisor.start(c) for c in self.collectors]
        self._lag_task = self.supervisor.start(self.loop_lag)
        log.info(
            "gateway %s started: %d device(s), %d channel(s), store %s",
            self.cfg.gateway.name,
            len(self.collectors),
            len(self.cfg.channels),
            self.cfg.store_path(),
        )

    async def stop(self) -> bool:
        """Drain in order within the deadline. Returns True if the drain completed."""
        deadline = self.cfg.runtime.shutdown_deadline_s
        complete = True
        if self._lag_task is not None:
            self._lag_task.cancel()
        try:
            async with asyncio.timeout(deadline):
                for t in self._collector_tasks:
                    t.cancel()
                await asyncio.gather(*self._collector_tasks, return_exceptions=True)
                await self.samples.close()
                if self._dsp_task:
                    await self._dsp_task
                await self.records.close()
                if self._store_task:
                    await self._store_task
        except TimeoutError:
            complete = False
            left = len(self.samples) + len(self.records)
            left += self.store.pending if self.store else 0
            log.warning(
                "shutdown deadline (%.1fs) passed: %d queued item(s) not processed", deadline, left
            )
            rest = [t for t in (*self._collector_tasks, self._dsp_task, self._store_task) if t]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        if self.store:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        log.info(
            "gateway stopped (%s); %d record(s) written this run",
            "drained" if complete else "deadline passed",
            self.store.written if self.store else 0,
        )
        return complete

    def status(self) -> dict[str, object]:
        return {
            "stages": self.supervisor.status(),
            "devices": {c.device_id: c.status() for c in self.collectors},
            "queues": {q.name: q.stats() for q in (self.samples, self.records)},
            "dsp": self.dsp.status(),
            "loop_lag": self.loop_lag.status(),
            "store": self.store.status() if self.store else {},
        }
