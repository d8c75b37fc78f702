"""5,000 scalar nodes at a 1 s sampling interval on one server (its own process, writing every
node once a second on its own schedule), split over five subscriptions: values arrive in order,
the newest round reaches every node, and the delivery lag does not grow from round to round.

(The asyncua server itself sometimes publishes a subscription late on a busy machine and then
replaces a queued value by the next: a few values may be skipped by the server, which is
OPC UA's sampling semantics, never a gap in the publish sequence the collector counts.)"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.collectors.opcua.config import OpcUaDevice
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue

LOAD_SERVER = Path(__file__).parent / "peers" / "opcua_load_server.py"
NODES = 5000
ROUNDS = 6
SETTLE = 3
GUARD_S = 120.0


@pytest.fixture
def load_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(LOAD_SERVER), str(port), "--scalars", str(NODES), "--period", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"  # blocks on the server's own event
        yield f"opc.tcp://127.0.0.1:{port}/load/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_5000_nodes_without_growing_lag(load_server: str) -> None:
    cfg = OpcUaDevice.model_validate(
        {
            "endpoint": load_server,
            "publishing_interval_ms": 1000,
            "sampling_interval_ms": 1000,
            "timeout_s": 30,
            "queue_size": 2,
            "nodes": [
                {"channel": f"c{i}", "namespace_uri": "urn:test:load", "node_id": f"s=v{i}"}
                for i in range(NODES)
            ],
        }
    )
    channels = {f"c{i}": Channel(kind="temperature") for i in range(NODES)}
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 50_000)
    collector = OpcUaCollector("load", cfg, channels, out, SystemClock())
    task = asyncio.create_task(collector.run())
    values: dict[str, list[int]] = defaultdict(list)  # channel -> rounds delivered, in order
    lags: dict[int, list[float]] = defaultdict(list)  # round -> seconds, gateway - source
    final: int | None = None  # every node must reach this round
    try:
        async with asyncio.timeout(GUARD_S):
            await collector.wait_state("connected")
            reached = 0
            while final is None or reached < NODES:
                item = await out.get()
                assert isinstance(item, Reading)
                assert item.quality == Quality.GOOD
                r = int(item.value)
                if r == 0:
                    continue  # the initial value, before the server's first round
                if final is None:  # rounds r + SETTLE .. are measured (creating 5,000
                    final = r + SETTLE + ROUNDS  # monitored items leaves a backlog at first)
                if r >= final and (not values[item.channel] or values[item.channel][-1] < final):
                    reached += 1
                values[item.channel].append(r)
                lags[r].append((item.gateway_ts_ns - item.source_ts_ns) / 1e9)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert final is not None
    assert len(values) == NODES
    assert all(v == sorted(set(v)) for v in values.values())  # in order, never repeated
    rounds = range(final - ROUNDS, final)
    delivered = sum(len(lags[r]) for r in rounds)
    assert delivered >= 0.9 * NODES * ROUNDS
    c = collector.counters
    assert c.subscriptions == 5  # 1000 monitored items per subscription
    assert (c.monitored_items, c.missed_notifications, c.disconnects) == (NODES, 0, 0)
    median = [statistics.median(lags[r]) for r in rounds]
    print(
        f"\n5000 nodes: {delivered / ROUNDS:.0f} values per round; median lag per round (s): "
        + ", ".join(f"{x:.2f}" for x in median)
    )
    # no backlog builds up: late rounds are not later than early ones (beyond the 1 s
    # publishing interval that decides when a value is sent)
    assert max(median[-2:]) <= max(median[:2]) + 1.0
