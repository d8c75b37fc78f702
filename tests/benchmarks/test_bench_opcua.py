"""OPC UA collection cost (``make bench``): client CPU per 2,560-sample array notification,
our collector (decode to float32, sequence, quality, ``SampleBlock`` on the samples queue,
drained) against a bare asyncua subscription handler that only counts, on the same server in
the same run. The server runs in its own process (writing 8 arrays of 2,560 samples every
0.1 s: 8 channels at 25.6 kHz), so the CPU time measured is the client's alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.collectors.opcua.config import OpcUaDevice
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.core.records import Reading, SampleBlock
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue
from tests.benchmarks.conftest import Bench

LOAD_SERVER = Path(__file__).parents[1] / "integration" / "peers" / "opcua_load_server.py"
ARRAYS = 8
SAMPLES = 2560
PERIOD_S = 0.1
WARMUP = 40  # notifications before measuring
MEASURED = 400  # notifications measured per run
NS = "urn:test:load"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(LOAD_SERVER),
            str(port),
            "--arrays",
            str(ARRAYS),
            "--samples",
            str(SAMPLES),
            "--period",
            str(PERIOD_S),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield f"opc.tcp://127.0.0.1:{port}/load/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Meter:
    """CPU seconds between notification ``WARMUP`` and ``WARMUP + MEASURED``."""

    def __init__(self) -> None:
        self.n = 0
        self.c0 = 0.0
        self.cpu = 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        self.n += 1
        if self.n == WARMUP:
            self.c0 = time.process_time()
        elif self.n == WARMUP + MEASURED:
            self.cpu = time.process_time() - self.c0
            self.done.set()


class BareHandler:
    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.meter.tick()


async def bare(url: str) -> float:
    meter = Meter()
    client = Client(url)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NS)
        sub = await client.create_subscription(PERIOD_S * 1000 / 2, BareHandler(meter))
        nodes = [client.get_node(ua.NodeId(f"a{i}", ns)) for i in range(ARRAYS)]
        await sub.subscribe_data_change(nodes, queuesize=16, sampling_interval=0)
        await meter.done.wait()
    finally:
        await client.disconnect()
    return meter.cpu


async def ours(url: str) -> float:
    meter = Meter()
    cfg = OpcUaDevice.model_validate(
        {
            "endpoint": url,
            "publishing_interval_ms": int(PERIOD_S * 1000 / 2),
            "sampling_interval_ms": 0,
            "nodes": [
                {"channel": f"v{i}", "namespace_uri": NS, "node_id": f"s=a{i}", "kind": "waveform"}
                for i in range(ARRAYS)
            ],
        }
    )
    channels = {
        f"v{i}": Channel(kind="vibration", sample_rate_hz=SAMPLES / PERIOD_S) for i in range(ARRAYS)
    }
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 1000)
    collector = OpcUaCollector("bench", cfg, channels, out, SystemClock())

    async def drain() -> None:
        while True:
            item = await out.get()
            if isinstance(item, SampleBlock) and item.samples.shape[0] == SAMPLES:
                meter.tick()

    tasks = [asyncio.create_task(collector.run()), asyncio.create_task(drain())]
    try:
        await meter.done.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert collector.counters.samples_lost == 0
    return meter.cpu


def test_bench_collector_vs_bare_asyncua(endpoint: str, bench: Bench) -> None:
    asyncio.run(bare(endpoint))  # warm up imports and the server
    rounds = [(asyncio.run(bare(endpoint)), asyncio.run(ours(endpoint))) for _ in range(3)]
    cpu_b = min(b for b, _ in rounds) / MEASURED  # interleaved, best of three each
    cpu_o = min(o for _, o in rounds) / MEASURED
    notifications_per_channel_s = 1 / PERIOD_S
    print(
        f"\n[bench] opcua {SAMPLES}-sample array notifications: ours {cpu_o * 1e6:.0f} us CPU, "
        f"bare asyncua handler {cpu_b * 1e6:.0f} us; CPU ratio {cpu_o / cpu_b:.2f}x "
        f"(goal <= 1.2); one core collects {1 / (cpu_o * notifications_per_channel_s):.0f} "
        f"array channels at {SAMPLES / PERIOD_S / 1000:.1f} kHz"
    )
    bench.record(
        f"CPU per {SAMPLES}-sample array notification",
        cpu_o * 1e6,
        "us",
        baseline=cpu_b * 1e6,
        baseline_name="bare asyncua handler",
        goal="<= 1.2x",
    )
    bench.record(
        "25.6 kHz array channels per core", 1 / (cpu_o * notifications_per_channel_s), "channels"
    )
