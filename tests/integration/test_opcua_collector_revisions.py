"""The OPC UA collector against plain asyncua servers on free loopback ports, for what a server
may do on its own: revise the subscription timing, hold non-finite values with Good status,
add nodes (and namespaces) after the session started.

The collector runs on a fake clock (its keep-alive watchdog, node retries and polls move only
when the test advances it); every wait is on the output queue or a collector event, with
``asyncio.timeout`` as a hang guard only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from asyncua import Node, Server, ua

from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.collectors.opcua.config import OpcUaDevice
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.demo import free_port
from gateway.dsp.framing import Framer
from gateway.runtime.queues import BoundedQueue

GUARD_S = 30.0
NS = "urn:test:revisions"
LOGGER = "gateway.collectors.opcua.collector"
NS_LATER_REASON = "namespace 'urn:test:loaded-later' is not on the server"


@dataclass
class PlainServer:
    server: Server
    endpoint: str
    idx: int
    machine: Node


@contextlib.asynccontextmanager
async def plain_server(min_publishing_ms: float = 0.0) -> AsyncIterator[PlainServer]:
    """An asyncua server with the object ``M`` in namespace ``NS``; with a minimum publishing
    interval, it revises any shorter requested interval up to it (as many servers do)."""
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/rev/"
    server.set_endpoint(endpoint)
    if min_publishing_ms:
        service = server.iserver.subscription_service
        create = service.create_subscription

        async def revising(params: ua.CreateSubscriptionParameters, *a: Any, **kw: Any) -> Any:
            params.RequestedPublishingInterval = max(
                params.RequestedPublishingInterval, min_publishing_ms
            )
            return await create(params, *a, **kw)

        service.create_subscription = revising  # type: ignore[method-assign]
    idx = await server.register_namespace(NS)
    machine = await server.nodes.objects.add_object(idx, "M")
    await server.start()
    try:
        yield PlainServer(server, endpoint, idx, machine)
    finally:
        await server.stop()


@dataclass
class Run:
    collector: OpcUaCollector
    clock: FakeClock
    out: BoundedQueue[SampleBlock | Reading]
    pending: list[SampleBlock | Reading] = field(default_factory=list)  # of other channels

    async def next(self, channel: str) -> SampleBlock | Reading:
        """The next record of ``channel``, in order."""
        for i, item in enumerate(self.pending):
            if item.channel == channel:
                return self.pending.pop(i)
        async with asyncio.timeout(GUARD_S):
            while True:
                item = await self.out.get()
                if item.channel == channel:
                    return item
                self.pending.append(item)

    async def sleeping(self, n: int) -> None:
        """Wait until ``n`` of the collector's tasks sleep on its clock."""
        async with asyncio.timeout(GUARD_S):
            await self.clock.wait_for_sleepers(n)

    async def reading(self, channel: str) -> Reading:
        item = await self.next(channel)
        assert isinstance(item, Reading)
        return item

    async def block(self, channel: str) -> SampleBlock:
        item = await self.next(channel)
        assert isinstance(item, SampleBlock)
        return item


@contextlib.asynccontextmanager
async def collect(cfg: dict[str, object], channels: dict[str, Channel]) -> AsyncIterator[Run]:
    clock = FakeClock()
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10_000)
    collector = OpcUaCollector("rev", OpcUaDevice.model_validate(cfg), channels, out, clock)
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(GUARD_S):
            await collector.wait_state("connected")
        yield Run(collector, clock, out)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


async def test_keepalive_limit_follows_the_servers_revised_publishing_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Asked for 100 ms x 10 keep-alives (1 s), the server grants 1000 ms x 10 (10 s): with 2
    keep-alives allowed the session is lost after 20 s of silence, not 2 s."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with plain_server(min_publishing_ms=1000.0) as srv:
        await srv.machine.add_variable(ua.NodeId("temp", srv.idx), "Temp", 21.5)
        cfg: dict[str, object] = {
            "endpoint": srv.endpoint,
            "publishing_interval_ms": 100,
            "keepalive_s": 1.0,
            "stale_after_keepalives": 2,
            "reconnect": {"initial_s": 1.0, "max_s": 1.0},
            "nodes": [{"channel": "t", "namespace_uri": NS, "node_id": "s=temp"}],
        }
        async with collect(cfg, {"t": Channel(kind="temperature")}) as run:
            first = await run.reading("t")  # the initial value's publish response is in
            assert (first.value, first.quality) == (21.5, Quality.GOOD)
            c = run.collector
            # 19 s of a quiet value (no publish response: the server's keep-alive is due
            # after 10 s of its own time): nine and a half of the requested-value limits
            for _ in range(19):
                await run.sleeping(1)  # the watchdog checked and sleeps again
                run.clock.advance(1.0)
            await run.sleeping(1)
            assert c.state == "connected"
            assert (c.counters.connects, c.counters.disconnects) == (1, 0)
            # past 20 s without a publish response the watchdog still ends the session
            async with asyncio.timeout(GUARD_S):
                while c.state == "connected":  # (a keep-alive arriving meanwhile moves it on)
                    run.clock.advance(25.0)
                    await run.sleeping(1)
            assert c.last_error == "no publish response for 20s (keep-alive missed)"
            run.clock.advance(2.0)  # the reconnect backoff (1 s +-20 %)
            async with asyncio.timeout(GUARD_S):
                await c.wait_state("connected")
            assert c.counters.reconnects == 1
    revised = messages(caplog, "revised the publishing interval")
    assert revised == [
        "device rev: the server revised the publishing interval to 1000 ms and the keep-alive "
        "count to 10 (requested 100 ms, 10): a subscription counts as lost after 20s without "
        "a publish response"
    ]  # once, not again on the reconnect


async def test_non_finite_values_are_delivered_bad(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with plain_server() as srv:
        temp = await srv.machine.add_variable(ua.NodeId("temp", srv.idx), "Temp", 21.5)
        wf = await srv.machine.add_variable(
            ua.NodeId("wf", srv.idx), "Wf", ua.Variant([0.0] * 4, ua.VariantType.Float)
        )
        cfg: dict[str, object] = {
            "endpoint": srv.endpoint,
            "publishing_interval_ms": 20,
            "sampling_interval_ms": 0,
            "nodes": [
                {"channel": "t", "namespace_uri": NS, "node_id": "s=temp"},
                {"channel": "v", "namespace_uri": NS, "node_id": "s=wf", "kind": "waveform"},
            ],
        }
        channels = {
            "t": Channel(kind="temperature"),
            "v": Channel(kind="vibration", sample_rate_hz=1000.0),
        }
        async with collect(cfg, channels) as run:
            assert (await run.reading("t")).quality == Quality.GOOD
            await run.block("v")  # the initial array
            got: list[tuple[float, Quality]] = []
            for value in (math.nan, math.inf, -math.inf, 22.0):
                await temp.write_value(value)
                r = await run.reading("t")
                got.append((r.value, r.quality))
            assert math.isnan(got[0][0])
            assert [q for _, q in got] == [Quality.BAD] * 3 + [Quality.GOOD]
            assert [v for v, _ in got[1:]] == [math.inf, -math.inf, 22.0]
            assert run.collector.counters.bad_values == 3

            # blocks of 4 samples at 1 kHz, stamped 4 ms apart: contiguous
            t0 = datetime.now(UTC) + timedelta(seconds=1)
            arrays = [[1, 2, 3, 4], [5, math.nan, 7, 8], [9, 10, 11, math.inf], [13, 14, 15, 16]]
            blocks: list[SampleBlock] = []
            for i, samples in enumerate(arrays):
                ts = t0 + timedelta(milliseconds=4 * i)
                variant = ua.Variant([float(x) for x in samples], ua.VariantType.Float)
                await wf.write_value(ua.DataValue(variant, SourceTimestamp=ts, ServerTimestamp=ts))
                blocks.append(await run.block("v"))
            assert [b.quality for b in blocks] == [
                Quality.GOOD,
                Quality.BAD,
                Quality.BAD,
                Quality.GOOD,
            ]
            assert [b.sequence for b in blocks] == [blocks[0].sequence + 4 * i for i in range(4)]
            assert run.collector.counters.bad_values == 5
            # framing restarts at a Bad block: no window holds a non-finite sample
            framer = Framer(window=4, hop=4)
            starts = []
            for b in blocks:
                w = framer.push(b)
                if w is not None:
                    assert np.isfinite(w.data).all()
                    starts.append(int(w.start_seq[0]))
            assert starts == [blocks[0].sequence, blocks[3].sequence]
    assert messages(caplog, "marked bad") == [
        "device rev: node s=temp (channel t) holds a non-finite value (nan): marked bad",
        "device rev: node s=wf (channel v) holds non-finite samples: marked bad",
    ]  # once per change, not per value
    assert messages(caplog, "finite again") == [
        "device rev: node s=temp (channel t) finite again",
        "device rev: node s=wf (channel v) finite again",
    ]


async def test_nodes_added_later_are_served_without_a_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A subscribed node (browse path) added to the address space and a polled node in a
    namespace registered after the session started are picked up by the periodic retry."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with plain_server() as srv:
        await srv.machine.add_variable(ua.NodeId("present", srv.idx), "Present", 1.0)
        cfg: dict[str, object] = {
            "endpoint": srv.endpoint,
            "publishing_interval_ms": 100,
            "keepalive_s": 60.0,  # its watchdog stays out of the way of 1 s clock steps
            "node_retry_s": 1.0,
            "poll_period_s": 1.0,
            "nodes": [
                {"channel": "p", "namespace_uri": NS, "node_id": "s=present"},
                {"channel": "late", "namespace_uri": NS, "browse_path": ["M", "Late"]},
                {
                    "channel": "later",
                    "namespace_uri": "urn:test:loaded-later",
                    "node_id": "s=later",
                    "mode": "polling",
                },
            ],
        }
        channels = {c: Channel(kind="temperature") for c in ("p", "late", "later")}
        async with collect(cfg, channels) as run:
            c = run.collector
            for channel in ("late", "later"):  # unavailable at the start
                assert (await run.reading(channel)).quality == Quality.BAD
            assert (await run.reading("p")).value == 1.0
            assert c.counters.monitored_items == 1
            await run.sleeping(2)  # the watchdog and the node retry
            run.clock.advance(1.0)  # a retry finding nothing new: no new log line
            await run.sleeping(2)
            unavailable = c.status()["unavailable_nodes"]
            assert isinstance(unavailable, dict)
            assert set(unavailable) == {"M/Late", "s=later"}

            late = await srv.machine.add_variable(
                ua.NodeId("late", srv.idx), ua.QualifiedName("Late", srv.idx), 5.0
            )
            run.clock.advance(1.0)
            assert (await run.reading("late")).value == 5.0
            await late.write_value(6.0)
            r = await run.reading("late")
            assert (r.value, r.quality) == (6.0, Quality.GOOD)
            assert c.status()["unavailable_nodes"] == {"s=later": NS_LATER_REASON}
            assert c.counters.monitored_items == 2

            later_ns = await srv.server.register_namespace("urn:test:loaded-later")
            await srv.server.nodes.objects.add_variable(
                ua.NodeId("later", later_ns), ua.QualifiedName("Later", later_ns), 7.0
            )
            await run.sleeping(2)
            run.clock.advance(1.0)
            r = await run.reading("later")  # polled from now on, every poll_period_s
            assert (r.value, r.quality) == (7.0, Quality.GOOD)
            assert c.status()["unavailable_nodes"] == {}
            assert c.state == "connected"
            assert (c.counters.connects, c.counters.disconnects) == (1, 0)
            assert c.counters.node_errors == 2
    assert len(messages(caplog, "unavailable:")) == 2  # once each, not per retry
    assert [m for m in messages(caplog, "available") if m.endswith(" available")] == [
        "device rev: node M/Late (channel late) available",
        "device rev: node s=later (channel later) available",
    ]
