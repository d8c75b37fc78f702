"""The alert stage: ``scored`` queue (FeatureFrame | Score) in, the same items plus the
``AlertEvent``s they caused out to ``records``.

Every batch taken from the input is evaluated by the ``AlertEngine``, handed to the publishers
(the OPC UA server) as one batch, then forwarded. A ticker on the stage's clock checks stale
channels and the collectors' connection states every ``alerts.tick_s``. Acknowledgements come
in through ``acknowledge`` (from the OPC UA server's methods) and go out as records too.
Drains its input on close, then returns; engine state lives in the stage and survives restarts.
With ``state_path``, the active alerts are also written there (atomically, durably) after each
transition, at most every ``SAVE_INTERVAL_S``, and at the end; they are read back when the stage
is made, so a restarted gateway carries on with them. ``state_saved`` waits until the file holds
every transition so far.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import AlertEngine
from gateway.config.plant import Asset
from gateway.core.clock import Clock
from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Score
from gateway.inference.registry import write_json_atomic
from gateway.runtime.queues import BoundedQueue, QueueClosed

log = logging.getLogger(__name__)
BATCH = 256
#: the active alerts are written at once after a transition, or this long after the previous
#: write if that is later (transitions meanwhile go into one write): flapping rules cost a few
#: writes a second, and a crash loses at most this long of them (they are in the journal)
SAVE_INTERVAL_S = 0.25

Scored = FeatureFrame | Score
Record = FeatureFrame | Score | AlertEvent | ActionRecord
#: channel -> True while the device feeding it answers
SourceStates = Callable[[], dict[str, bool]]


class AlertPublisher(Protocol):
    """Something that shows the live state (the OPC UA server). ``publish`` gets each batch
    once, after evaluation; it must not keep ``items`` beyond the call."""

    async def publish(
        self, items: Sequence[Scored], events: Sequence[AlertEvent], engine: AlertEngine
    ) -> None: ...


class AlertListener(Protocol):
    """Something that acts on transitions (alert actions)."""

    async def on_events(self, events: Sequence[AlertEvent]) -> Sequence[Record]:
        """Act on ``events``; returns audit records to forward to the store."""
        ...


class AlertStage:
    name = "alerts"

    def __init__(
        self,
        cfg: AlertsConfig,
        assets: dict[str, Asset],
        inp: BoundedQueue[Scored],
        out: BoundedQueue[Record],
        clock: Clock,
        sources: SourceStates | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.cfg, self.inp, self.out, self.clock, self.sources = cfg, inp, out, clock, sources
        self.engine = AlertEngine(cfg, assets)
        #: the active alerts, rewritten after every transition and read back at start
        self.state_path = state_path
        self._saved: dict[str, dict[str, object]] = {}
        self._saver: asyncio.Task[None] | None = None
        self._dirty = False  # a transition not yet written
        self._writing = False  # a write in flight (it is never cancelled)
        self._closing = False  # the stage is ending: no more waiting between writes
        self._written_at = -math.inf  # clock.monotonic() at the end of the last write
        if state_path is not None:
            self._restore(state_path)
        self.publishers: list[AlertPublisher] = []
        self.listeners: list[AlertListener] = []
        self.events = 0
        self.publish_errors = 0
        self._publisher_failing = False
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, object]:
        return {
            "events": self.events,
            "active": [s.active.alert_id for _, s in self.engine.active() if s.active],
            "publish_errors": self.publish_errors,
        }

    def _restore(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            restored = self.engine.restore(data)
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as exc:
            log.error("cannot restore the active alerts from %s (%s); none restored", path, exc)
            return
        self._saved = self.engine.snapshot()
        if restored:
            log.info("restored %d active alert(s) from the previous run", len(restored))

    def _changed(self) -> None:
        """A transition happened: have the active alerts written (at once, or
        ``SAVE_INTERVAL_S`` after the previous write)."""
        if self.state_path is None:
            return
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_loop(), name="alerts:save")

    async def _save_loop(self) -> None:
        # (only transitions cause writes: a raised feature alert's detail, its latest value,
        # changes with every window and is written along with them)
        while self._dirty:
            wait = self._written_at + SAVE_INTERVAL_S - self.clock.monotonic()
            if wait > 0 and not self._closing:
                await self.clock.sleep(wait)
            self._dirty = False
            await self._save()
            self._written_at = self.clock.monotonic()

    async def state_saved(self) -> None:
        """Wait until the transitions so far are written (up to ``SAVE_INTERVAL_S`` of the
        stage's clock after the previous write; a failed write is logged, and retried at the
        next transition)."""
        if self._saver is not None:
            await asyncio.shield(self._saver)

    async def _save(self) -> bool:
        """Write the active alerts if they changed; True if written (a failure is logged; the
        next transition tries again)."""
        if self.state_path is None:
            return False
        snap = self.engine.snapshot()
        if snap == self._saved:
            return False
        self._writing = True
        try:
            await asyncio.to_thread(write_json_atomic, self.state_path, snap)
        except OSError as exc:
            log.error("cannot save the active alerts to %s: %s", self.state_path, exc)
            return False
        finally:
            self._writing = False
        self._saved = snap
        return True

    async def acknowledge(self, alert_id: str, by: str = "") -> AlertEvent:
        """Acknowledge an active alert (``UnknownAlert`` if none has that id) and record it;
        acknowledging it again returns the first acknowledgement, recorded once."""
        async with self._lock:
            again = self.engine.is_acknowledged(alert_id)
            ev = self.engine.acknowledge(alert_id, self.clock.now_ns(), by)
            if not again:
                await self._emit([], [ev])
            return ev

    async def run(self) -> None:
        self._closing = False
        ticker = asyncio.create_task(self._tick_loop(), name="alerts:tick")
        try:
            while True:
                try:
                    items = await self.inp.get_many(BATCH)
                except QueueClosed:
                    return
                async with self._lock:
                    await self._emit(items, self.engine.on_items(items))
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            if self._saver is not None:  # a write in flight finishes; the last state after it
                self._closing = True
                if not self._writing:
                    self._saver.cancel()
                await asyncio.gather(self._saver, return_exceptions=True)
                self._saver = None
                await self._save()

    async def tick(self) -> None:
        """One check of stale channels and source states (the ticker calls this)."""
        async with self._lock:
            now = self.clock.now_ns()
            events: list[AlertEvent] = []
            if self.sources is not None:
                for ch, up in self.sources().items():
                    events += self.engine.set_source(ch, up, now)
            events += self.engine.tick(now)
            if events:
                await self._emit([], events)

    async def _tick_loop(self) -> None:
        while True:
            await self.tick()
            await self.clock.sleep(self.cfg.tick_s)

    async def _emit(self, items: Sequence[Scored], events: list[AlertEvent]) -> None:
        for ev in events:
            log.info("alert %s %s: %s", ev.alert_id, ev.state.value, ev.message)
        for p in self.publishers:
            try:
                await p.publish(items, events, self.engine)
            except (OSError, RuntimeError, ValueError) as exc:
                self.publish_errors += 1
                if not self._publisher_failing:
                    log.error("publishing to %s failed: %s", type(p).__name__, exc)
                self._publisher_failing = True
            else:
                if self._publisher_failing:
                    log.info("publishing recovered")
                self._publisher_failing = False
        if events:
            self._changed()
        audit: list[Record] = []
        if events:
            for listener in self.listeners:
                audit += await listener.on_events(events)
        await self.out.put_many([*items, *events, *audit])
        self.events += len(events)
