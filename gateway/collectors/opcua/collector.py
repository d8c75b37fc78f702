"""The OPC UA collector: one supervised task per server.

Per connection: open a session (security, authentication), resolve every node (namespace URIs
to indices, browse paths to NodeIds), create subscriptions (at most
``max_items_per_subscription`` monitored items each) and one polling loop for polled nodes,
then serve until the connection is lost (asyncua's keep-alive probe, a subscription status
change, a subscription silent for ``stale_after_keepalives`` of the keep-alive periods the
server granted, or a failed request). Nodes that could not be served are resolved again every
``node_retry_s`` on the live session and added once they resolve. Then close, wait with
backoff and jitter, reconnect and re-create everything, forever.
A refusal (untrusted certificate, wrong credentials) is logged once and retried every
``reconnect.max_s``. State changes are logged once each, never per failed attempt.

Output on the shared samples queue: ``Reading`` for scalar nodes, ``SampleBlock`` for waveform
nodes (see ``convert.WaveformStream`` for how ``sequence`` is derived). Timestamps: the value's
source timestamp (else server timestamp, else the gateway's) and the gateway's receive time.
Status codes become ``Quality``: Uncertain and Bad values are delivered marked, non-numeric
values as NaN with Bad quality, non-finite values (NaN, +-inf; in a waveform, any sample) with
Bad quality.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from asyncua import ua
from asyncua.common.subscription import Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from gateway.collectors.opcua import fastarrays
from gateway.collectors.opcua.config import OpcUaDevice, OpcUaNode
from gateway.collectors.opcua.convert import (
    WaveformStream,
    quality_of,
    reading_value,
    source_ts_ns,
    waveform_samples,
)
from gateway.collectors.opcua.resolve import ResolvedNode, resolve_nodes
from gateway.collectors.opcua.session import OpcUaSession, RefusedError
from gateway.collectors.state import StateEvents
from gateway.config.plant import Channel
from gateway.core.clock import Clock
from gateway.core.errors import TransientError
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.opcua_pki import Pki, default_application_uri
from gateway.runtime.queues import BoundedQueue
from gateway.runtime.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
STATES = ("connecting", "connected", "unreachable", "refused")
#: events buffered per subscription between asyncua's publish loop and the collector
EVENT_QUEUE = 20_000
_NETWORK_ERRORS = (UaError, OSError, TimeoutError, ConnectionError)


@dataclass
class OpcUaCounters:
    connects: int = 0
    reconnects: int = 0  # connects after a loss
    failed_connects: int = 0
    refusals: int = 0
    disconnects: int = 0
    subscriptions: int = 0  # created on the current connection
    monitored_items: int = 0
    notifications: int = 0  # data changes received
    missed_notifications: int = 0  # publish sequence gaps and local queue overflows
    readings: int = 0
    blocks: int = 0
    bad_values: int = 0  # delivered with Uncertain or Bad quality
    samples_lost: int = 0  # waveform sequence gaps
    duplicates: int = 0  # repeated waveform blocks dropped
    node_errors: int = 0
    polls: int = 0
    late_polls: int = 0


@dataclass(frozen=True)
class _Target:
    """What one monitored item or polled value feeds."""

    node: ResolvedNode
    is_sequence: bool = False


class _Counter:
    """Recent values of a waveform's sequence counter node by source timestamp.

    A block takes the counter value stamped with its own source timestamp (a server sends
    queued values item by item, so a counter may arrive several values ahead of its array).
    With none, the first block ever takes the latest counter value and later blocks are
    numbered by time (``None``).
    """

    def __init__(self, keep: int = 256) -> None:
        self._by_ts: dict[int, int] = {}
        self._keep = keep
        self.latest: int | None = None

    def add(self, ts_ns: int, value: int) -> None:
        self._by_ts[ts_ns] = value
        self.latest = value
        if len(self._by_ts) > self._keep:
            del self._by_ts[next(iter(self._by_ts))]

    def sequence_for(self, ts_ns: int, first_block: bool) -> int | None:
        value = self._by_ts.get(ts_ns)
        if value is None and first_block:
            return self.latest
        return value


class _Subscription(Subscription):
    """An asyncua subscription whose publish results go straight to ``sink`` (the collector
    queues the items by client handle: no per-item task or event object on the hot path)."""

    sink: Callable[[ua.PublishResult], None]

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        self.sink(publish_result)


@dataclass
class _SubState:
    sub: _Subscription
    keepalive_s: float  # the keep-alive period the server granted
    targets: dict[int, _Target] = field(default_factory=dict)  # client handle -> target
    items: collections.deque[tuple[int, ua.DataValue]] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str = ""  # why the server ended the subscription, once it did
    last_seq: int | None = None
    last_publish: float = 0.0
    next_handle: int = 1


@dataclass
class _Live:
    """What runs on one session. Any task in ``tasks`` that ends with a reason (a string)
    or a network error ends the session; one that returns ``None`` only finished its job."""

    session: OpcUaSession
    polled: list[_Target] = field(default_factory=list)  # read by the polling loop, if any
    served: set[int] = field(default_factory=set)  # node indices subscribed or polled
    tasks: set[asyncio.Future[str | None]] = field(default_factory=set)
    background: list[asyncio.Future[Any]] = field(default_factory=list)  # cancelled at the end
    added: asyncio.Event = field(default_factory=asyncio.Event)
    polling: bool = False

    def spawn(self, work: Awaitable[str | None]) -> None:
        self.tasks.add(asyncio.ensure_future(work))
        self.added.set()


class OpcUaCollector:
    """Collector for one OPC UA server. ``state`` is ``connecting``, ``connected`` (session
    up, items created), ``unreachable`` (no session; retrying with backoff) or ``refused``
    (the server or the gateway refused the connection; see the log for the fix)."""

    def __init__(
        self,
        device_id: str,
        cfg: OpcUaDevice,
        channels: dict[str, Channel],
        out: BoundedQueue[SampleBlock | Reading],
        clock: Clock,
        pki: Pki | None = None,
        application_uri: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = f"opcua:{device_id}"
        self.device_id, self.cfg, self.channels, self.out, self.clock = (
            device_id,
            cfg,
            channels,
            out,
            clock,
        )
        if cfg.security_mode != "None" and pki is None:
            raise ValueError(f"device {device_id}: a secured endpoint needs a Pki")
        self.pki = pki
        fastarrays.install()
        self.application_uri = (
            cfg.application_uri or application_uri or default_application_uri("pdm-gateway")
        )
        self.rand = rand
        self.state = "connecting"
        self.counters = OpcUaCounters()
        self.last_error = ""
        self._streams: dict[str, WaveformStream] = {}
        for n in cfg.nodes:
            fs = channels[n.channel].sample_rate_hz if n.channel in channels else None
            if n.kind == "waveform":
                self._streams[n.channel] = WaveformStream(n.channel, fs or n.sample_rate_hz or 1.0)
        self._seq_counters: dict[str, _Counter] = {}
        self._failed_attempts = 0
        self._had_session = False
        self._node_problems: dict[int, str] = {}
        self._not_numeric: set[str] = set()
        self._not_finite: set[str] = set()  # channels whose latest value is not finite
        self._revision: tuple[float, int] | None = None  # logged revised subscription timing
        self._gap_log = RateLimitedLog(log, interval_s=60.0)
        self._missed_log = RateLimitedLog(log, interval_s=60.0)
        self._subs: list[_SubState] = []
        self._states = StateEvents(STATES)
        #: set after every connection attempt and state change (tests and status views)
        self.changed = asyncio.Event()

    # -- state ----------------------------------------------------------------------------
    async def wait_state(self, state: str) -> None:
        """Wait (on an event) until the collector is in ``state``."""
        await self._states.wait(state)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._states.enter(state)
        self.changed.set()

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "endpoint": self.cfg.endpoint,
            "last_error": self.last_error,
            "unavailable_nodes": {
                self.cfg.nodes[i].label: reason for i, reason in sorted(self._node_problems.items())
            },
            **vars(self.counters),
        }

    def _set_connected(self) -> None:
        if self.state in ("unreachable", "refused"):
            log.info(
                "device %s recovered (%s) after %d failed attempt(s)",
                self.device_id,
                self.cfg.endpoint,
                self._failed_attempts,
            )
        else:
            log.info("device %s connected (%s)", self.device_id, self.cfg.endpoint)
        self._failed_attempts = 0
        self.last_error = ""
        self._set_state("connected")

    def _set_down(self, state: str, reason: str) -> None:
        if self.state != state or reason != self.last_error:
            if state == "refused":
                log.error("device %s refused (%s): %s", self.device_id, self.cfg.endpoint, reason)
            elif self.state != "unreachable":
                log.warning(
                    "device %s unreachable (%s): %s; retrying with backoff",
                    self.device_id,
                    self.cfg.endpoint,
                    reason,
                )
        self.last_error = reason
        self._set_state(state)

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        fastarrays.NUMPY_ARRAYS.set(True)  # this task and the asyncua tasks it starts
        while True:
            session = OpcUaSession(self.device_id, self.cfg, self.pki, self.application_uri)
            try:
                try:
                    await session.open()
                except RefusedError as exc:
                    self.counters.refusals += 1
                    self._failed_attempts += 1
                    self._set_down("refused", str(exc))
                    await session.close()
                    await self.clock.sleep(self.cfg.reconnect.max_s)
                    continue
                except TransientError as exc:
                    self.counters.failed_connects += 1
                    self._set_down("unreachable", str(exc))
                    await session.close()
                    await self.clock.sleep(self._backoff())
                    continue
                self.counters.connects += 1
                if self._had_session:
                    self.counters.reconnects += 1
                self._had_session = True
                reason = await self._serve(session)
            finally:
                self._subs = []
                await session.close()
            self.counters.disconnects += 1
            self._set_down("unreachable", reason)
            await self.clock.sleep(self._backoff())

    def _backoff(self) -> float:
        attempt = self._failed_attempts
        self._failed_attempts += 1
        return self.cfg.reconnect.delay(attempt, self.rand())

    async def _serve(self, session: OpcUaSession) -> str:
        """Create everything on the new session and run until it is lost; returns why."""
        live = _Live(session)
        self.counters.subscriptions = self.counters.monitored_items = 0
        try:
            try:
                errors = await self._add_nodes(live, range(len(self.cfg.nodes)))
            except _NETWORK_ERRORS as exc:
                return f"setting up the session failed: {exc or type(exc).__name__}"
            self._report_node_errors(dict(errors))
            await self._emit_unresolved(errors)
            self._set_connected()
            live.spawn(self._watch_keepalive())
            if self._unserved(live):
                live.spawn(self._retry_nodes(live))
            return await self._run_tasks(live)
        finally:
            everything = [*live.tasks, *live.background]
            for t in everything:
                t.cancel()
            await asyncio.gather(*everything, return_exceptions=True)

    async def _run_tasks(self, live: _Live) -> str:
        """Wait until the session is lost or one of its tasks ends it; returns why."""
        lost = asyncio.ensure_future(live.session.lost.wait())
        live.background.append(lost)
        while True:
            live.added.clear()
            added = asyncio.ensure_future(live.added.wait())
            try:
                waits: list[asyncio.Future[Any]] = [*live.tasks, lost, added]
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                added.cancel()
            if lost in done:
                return live.session.lost_reason or "connection lost"
            for t in [t for t in live.tasks if t in done]:
                live.tasks.discard(t)
                error = t.exception()
                if error is not None and not isinstance(error, _NETWORK_ERRORS):
                    raise error
                if error is not None:
                    return f"request failed: {error or type(error).__name__}"
                if t.result() is not None:
                    return str(t.result())

    async def _add_nodes(self, live: _Live, indices: Iterable[int]) -> list[tuple[int, str]]:
        """Resolve the configured nodes at ``indices`` and subscribe or poll those that resolve;
        returns ``(index, reason)`` for the others. Network errors propagate."""
        client = live.session.client
        resolved, errors = await resolve_nodes(client, list(self.cfg.nodes), only=list(indices))
        subscribed = [r for r in resolved if self.cfg.node_mode(r.node) == "subscription"]
        polled = [r for r in resolved if self.cfg.node_mode(r.node) == "polling"]
        await self._subscribe(live, subscribed, errors)
        for r in polled:
            if r.sequence_id is not None:
                live.polled.append(_Target(r, True))
            live.polled.append(_Target(r, False))
            live.served.add(r.index)
        if live.polled and not live.polling:
            live.polling = True
            live.spawn(self._poll(live))
        return errors

    def _unserved(self, live: _Live) -> list[int]:
        """Indices of the nodes that cannot be served and are neither subscribed nor polled (a
        node served without its sequence node stays as it is until the next session)."""
        return sorted(set(self._node_problems) - live.served)

    async def _retry_nodes(self, live: _Live) -> None:
        """Every ``node_retry_s``: resolve the unserved nodes again and serve those that now
        resolve, until none is left."""
        while unserved := self._unserved(live):
            await self.clock.sleep(self.cfg.node_retry_s)
            errors = await self._add_nodes(live, unserved)
            kept = {i: r for i, r in self._node_problems.items() if i not in unserved}
            self._report_node_errors({**kept, **dict(errors)})

    # -- nodes that cannot be served --------------------------------------------------------
    def _report_node_errors(self, problems: dict[int, str]) -> None:
        """Make ``problems`` (node index -> reason) the nodes that cannot be served; log each
        new problem or changed reason once, and each node that is available again."""
        new = {i: r for i, r in problems.items() if self._node_problems.get(i) != r}
        for i, reason in sorted(new.items()):
            n = self.cfg.nodes[i]
            log.error(
                "device %s: node %s (channel %s) unavailable: %s",
                self.device_id,
                n.label,
                n.channel,
                reason,
            )
        for i in set(self._node_problems) - set(problems):
            n = self.cfg.nodes[i]
            log.info(
                "device %s: node %s (channel %s) available", self.device_id, n.label, n.channel
            )
        self.counters.node_errors += len(new)
        self._node_problems = problems

    async def _emit_unresolved(self, errors: list[tuple[int, str]]) -> None:
        """A Bad reading (NaN) for each reading node that cannot be served, so the channel's
        consumers see it is not just quiet."""
        now = self.clock.now_ns()
        for i, _ in errors:
            n = self.cfg.nodes[i]
            if n.kind == "reading":
                await self.out.put(Reading(n.channel, now, now, math.nan, Quality.BAD))

    # -- subscriptions ------------------------------------------------------------------------
    async def _subscribe(
        self, live: _Live, nodes: list[ResolvedNode], errors: list[tuple[int, str]]
    ) -> None:
        """Monitored items for ``nodes``: in the newest subscription while it has room (at most
        ``max_items_per_subscription`` items; a waveform and its counter stay in one), then in
        new ones. A node whose item the server refuses is added to ``errors``."""
        limit = self.cfg.max_items_per_subscription
        pending = collections.deque(nodes)
        while pending:
            state = self._subs[-1] if self._subs else None
            if state is None or (len(state.targets) >= limit):
                state = await self._new_subscription(live)
            room = limit - len(state.targets)
            chunk: list[ResolvedNode] = []
            while pending:
                items = 2 if pending[0].sequence_id is not None else 1
                if items > room and (chunk or state.targets):
                    break
                chunk.append(pending.popleft())
                room -= items
            if not chunk:  # the newest subscription is too full for the next node
                state = await self._new_subscription(live)
                continue
            await self._add_items(live, state, chunk, errors)

    async def _new_subscription(self, live: _Live) -> _SubState:
        """Create a subscription (and its consumer task); log once if the server revised its
        timing."""
        cfg = self.cfg
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = float(cfg.publishing_interval_ms)
        keepalive = max(1, math.ceil(cfg.keepalive_s * 1000 / cfg.publishing_interval_ms))
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = keepalive * max(3, cfg.stale_after_keepalives * 2)
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        sub = _Subscription(live.session.client.uaclient.session, params, None)
        res = await sub.init()
        interval = float(res.RevisedPublishingInterval)
        count = int(res.RevisedMaxKeepAliveCount)
        if not (interval > 0 and math.isfinite(interval)) or count <= 0:  # not revised
            interval, count = params.RequestedPublishingInterval, keepalive
        self._log_revision(params.RequestedPublishingInterval, keepalive, interval, count)
        state = _SubState(sub, interval * count / 1000, last_publish=self.clock.monotonic())
        sub.sink = self._make_sink(state)
        if not self._subs:
            # asyncua keeps one PublishRequest in flight per session (its publish loop); more
            # loops keep more in flight, so a slow answer for one subscription does not hold
            # the others
            client = live.session.client
            live.background += [
                asyncio.ensure_future(client.uaclient.session._publish_loop())
                for _ in range(cfg.publish_requests - 1)
            ]
        self._subs.append(state)
        self.counters.subscriptions += 1
        live.spawn(self._consume(state))
        return state

    def _log_revision(
        self, interval: float, count: int, revised: float, revised_count: int
    ) -> None:
        if (revised, revised_count) == (interval, count):
            self._revision = None
            return
        if self._revision != (revised, revised_count):
            self._revision = (revised, revised_count)
            log.info(
                "device %s: the server revised the publishing interval to %g ms and the "
                "keep-alive count to %d (requested %g ms, %d): a subscription counts as lost "
                "after %.3gs without a publish response",
                self.device_id,
                revised,
                revised_count,
                interval,
                count,
                revised * revised_count / 1000 * self.cfg.stale_after_keepalives,
            )

    async def _add_items(
        self,
        live: _Live,
        state: _SubState,
        chunk: list[ResolvedNode],
        errors: list[tuple[int, str]],
    ) -> None:
        """Create the monitored items of ``chunk`` in one request."""
        requests: list[ua.MonitoredItemCreateRequest] = []
        main: dict[int, int] = {}  # node index -> handle of its value item
        seq: dict[int, int] = {}  # node index -> handle of its sequence item
        for r in chunk:
            if r.sequence_id is not None:
                seq[r.index] = state.next_handle
                requests.append(self._item(r, r.sequence_id, state, True))
            main[r.index] = state.next_handle
            requests.append(self._item(r, r.node_id, state, False))
        results = await state.sub.create_monitored_items(requests)
        for req, res in zip(requests, results, strict=True):
            if isinstance(res, ua.StatusCode):
                target = state.targets.pop(req.RequestedParameters.ClientHandle)
                what = "sequence node" if target.is_sequence else "node"
                errors.append((target.node.index, f"{what}: {res.name}"))
        for r in chunk:
            if main[r.index] in state.targets:
                live.served.add(r.index)
            elif r.index in seq:  # its counter alone is of no use
                state.targets.pop(seq[r.index], None)
        self.counters.monitored_items = sum(len(s.targets) for s in self._subs)

    def _item(
        self, r: ResolvedNode, node_id: ua.NodeId, state: _SubState, is_seq: bool
    ) -> ua.MonitoredItemCreateRequest:
        n, cfg = r.node, self.cfg
        handle = state.next_handle
        state.next_handle += 1
        rv = ua.ReadValueId()
        rv.NodeId = node_id
        rv.AttributeId = AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = handle
        mp.SamplingInterval = float(
            n.sampling_interval_ms
            if n.sampling_interval_ms is not None
            else cfg.sampling_interval_ms
        )
        default_q = cfg.waveform_queue_size if n.kind == "waveform" else cfg.queue_size
        mp.QueueSize = n.queue_size or default_q
        mp.DiscardOldest = True
        if n.deadband is not None and not is_seq:
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            f.DeadbandType = ua.DeadbandType.Absolute
            f.DeadbandValue = n.deadband
            mp.Filter = f
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        state.targets[handle] = _Target(r, is_seq)
        return req

    def _make_sink(self, state: _SubState) -> Callable[[ua.PublishResult], None]:
        def sink(result: ua.PublishResult) -> None:
            state.last_publish = self.clock.monotonic()
            msg = result.NotificationMessage
            if not msg.NotificationData:
                return  # a keep-alive
            missed = 0
            seq = int(msg.SequenceNumber)
            if seq:  # (0: a loss reported by the client itself)
                if state.last_seq is not None and seq > state.last_seq + 1:
                    missed += seq - state.last_seq - 1
                state.last_seq = seq
            items = state.items
            for d in msg.NotificationData:
                if isinstance(d, ua.DataChangeNotification):
                    for item in d.MonitoredItems:
                        if len(items) >= EVENT_QUEUE:  # the collector fell behind: oldest go
                            items.popleft()
                            missed += 1
                        items.append((item.ClientHandle, item.Value))
                elif isinstance(d, ua.StatusChangeNotification) and not d.Status.is_good():
                    state.ended = f"subscription ended ({d.Status.name})"
            state.ready.set()
            if missed:
                self.counters.missed_notifications += missed
                self._missed_log.warning(
                    "device %s: %d notification(s) missed (publish gaps or the collector fell "
                    "behind)",
                    self.device_id,
                    missed,
                )

        return sink

    async def _consume(self, state: _SubState) -> str:
        """Turn a subscription's queued items into records, in arrival order; one wake-up per
        publish response."""
        items, targets = state.items, state.targets
        while True:
            await state.ready.wait()
            state.ready.clear()
            while items:
                handle, dv = items.popleft()
                target = targets.get(handle)
                if target is not None:
                    await self._on_value(target, dv, None if dv.Value is None else dv.Value.Value)
            if state.ended:
                return state.ended

    async def _watch_keepalive(self) -> str:
        """Return once a subscription stays silent (not even a keep-alive) for
        ``stale_after_keepalives`` of the keep-alive periods the server granted it."""
        stale = self.cfg.stale_after_keepalives
        while True:
            await self.clock.sleep(self.cfg.keepalive_s)
            now = self.clock.monotonic()
            for s in self._subs:
                limit = s.keepalive_s * stale
                if now - s.last_publish > limit:
                    return f"no publish response for {limit:.3g}s (keep-alive missed)"

    # -- polling --------------------------------------------------------------------------
    async def _poll(self, live: _Live) -> str:
        """Read every polled node (and waveform counter) in batches each ``poll_period_s``;
        ``live.polled`` may grow meanwhile."""
        session, targets = live.session, live.polled
        period, batch = self.cfg.poll_period_s, self.cfg.poll_batch_size
        deadline = self.clock.monotonic()
        while True:
            self.counters.polls += 1
            for start in range(0, len(targets), batch):
                part = targets[start : start + batch]
                params = ua.ReadParameters()
                params.TimestampsToReturn = ua.TimestampsToReturn.Both
                for t in part:
                    rv = ua.ReadValueId()
                    rv.NodeId = t.node.sequence_id if t.is_sequence else t.node.node_id
                    rv.AttributeId = AttributeIds.Value
                    params.NodesToRead.append(rv)
                values = await session.client.uaclient.read(params)
                for t, dv in zip(part, values, strict=True):
                    await self._on_value(t, dv, dv.Value.Value if dv.Value is not None else None)
            now = self.clock.monotonic()
            deadline += period
            if deadline < now:
                self.counters.late_polls += 1
                deadline = now
            await self.clock.sleep(deadline - now)

    # -- values -----------------------------------------------------------------------------
    async def _on_value(self, target: _Target, dv: ua.DataValue | None, value: object) -> None:
        self.counters.notifications += 1
        n = target.node.node
        now = self.clock.now_ns()
        ts = source_ts_ns(dv, now)
        quality = quality_of(dv.StatusCode if dv is not None else None)
        if target.is_sequence:
            if quality != Quality.BAD and isinstance(value, int) and not isinstance(value, bool):
                self._seq_counters.setdefault(n.channel, _Counter()).add(ts, value)
            return
        if n.kind == "waveform":
            await self._on_waveform(n, ts, now, quality, value)
            return
        v = reading_value(value)
        if v is None:
            if value is not None and n.channel not in self._not_numeric:
                self._not_numeric.add(n.channel)
                log.error(
                    "device %s: node %s (channel %s) is not numeric (%s): marked bad",
                    self.device_id,
                    n.label,
                    n.channel,
                    type(value).__name__,
                )
            v, quality = math.nan, Quality.BAD
        elif not math.isfinite(v):
            if quality != Quality.BAD:
                self._note_finite(n, f"a non-finite value ({v})")
                quality = Quality.BAD
        elif n.channel in self._not_finite:
            self._note_finite(n, None)
        if quality != Quality.GOOD:
            self.counters.bad_values += 1
        self.counters.readings += 1
        await self.out.put(Reading(n.channel, ts, now, v, quality))

    def _note_finite(self, n: OpcUaNode, problem: str | None) -> None:
        """Log once when a channel's values turn non-finite (``problem`` says how) and once
        when they are finite again (``problem`` None)."""
        if problem is None:
            self._not_finite.discard(n.channel)
            log.info(
                "device %s: node %s (channel %s) finite again", self.device_id, n.label, n.channel
            )
        elif n.channel not in self._not_finite:
            self._not_finite.add(n.channel)
            log.warning(
                "device %s: node %s (channel %s) holds %s: marked bad",
                self.device_id,
                n.label,
                n.channel,
                problem,
            )

    async def _on_waveform(
        self, n: OpcUaNode, ts: int, now: int, quality: Quality, value: object
    ) -> None:
        samples = waveform_samples(value)
        if samples is None or samples.shape[0] == 0:
            if quality != Quality.GOOD or (value is not None and samples is None):
                self.counters.bad_values += 1
            return
        stream = self._streams[n.channel]
        counter = self._seq_counters.get(n.channel)
        size = int(samples.shape[0])
        seq = counter.sequence_for(ts, stream.last_ts is None) if counter else None
        place = stream.place(size, ts, seq)
        if place is None:
            self.counters.duplicates += 1
            return
        if place.lost:
            self.counters.samples_lost += place.lost
            self._gap_log.warning(
                "device %s: %s: %d sample(s) missed before sequence %d",
                self.device_id,
                n.channel,
                place.lost,
                place.sequence,
            )
        if place.skip:
            samples = samples[place.skip :]
            ts += round(place.skip / stream.fs * 1e9)
        if not np.isfinite(samples).all():
            if quality != Quality.BAD:
                self._note_finite(n, "non-finite samples")
                quality = Quality.BAD
        elif n.channel in self._not_finite:
            self._note_finite(n, None)
        if quality != Quality.GOOD:
            self.counters.bad_values += 1
        self.counters.blocks += 1
        await self.out.put(
            SampleBlock(
                n.channel, ts, now, stream.fs, samples, place.sequence + place.skip, quality
            )
        )
