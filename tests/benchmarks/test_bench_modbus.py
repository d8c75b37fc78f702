"""Modbus collection cost (``make bench``): our collector's waveform path against a bare pymodbus
client loop on the same server in the same run, with 1 and 16 devices.

Both sides make the same requests per sweep of a simulated machine's vibration ring (8192 int16
samples): read the uint32 sample counter, read the whole ring in requests of at most 125
registers (split where it wraps), read the counter again, drop the samples the device overwrote
meanwhile and turn the rest into scaled float32 samples. Ours runs the production read path
(``ModbusCollector._read_ring`` on a fresh cursor: busy retry, error classification, counters,
overrun accounting, ``SampleBlock``) and passes each block through a ``BoundedQueue``; the bare
loop uses pymodbus's own ``convert_from_registers`` and numpy, as a user of the library would.

The server (``modbus_ring_server``, pymodbus, in its own process so the CPU measured is the
client's alone) holds a frozen ring: every sweep makes the same 68 requests (66 of them read 125
registers) and yields a whole block. Both sides keep their connections open in one event loop and
take turns: a round is one sweep of every device on one side, then on the other, the order
alternating, so both see the same load on a shared machine. The figure is CPU per request:
``time.process_time`` of this process summed over each side's turns, divided by its requests.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from gateway.collectors.modbus.collector import ModbusCollector, _RingCursor
from gateway.collectors.modbus.config import ModbusDevice
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.core.records import Reading, SampleBlock
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue
from simulators import modbus_map as M
from tests.benchmarks.conftest import Bench

#: rounds: in each, every device makes one whole-ring sweep (68 requests) on one side, then on
#: the other, the order alternating between rounds
ROUNDS = {1: 250, 16: 16}
FS = 25_600.0
GOAL = "<= 1.1x"

#: one sweep of one device, returning the number of requests made; and closing its connection
Sweep = Callable[[], Awaitable[int]]
Close = Callable[[], Awaitable[None]]


async def bare(port: int, unit: int) -> tuple[Sweep, Close]:
    w = M.ring_waveform("v")
    ring, length = w.ring_address, w.ring_length
    c = AsyncModbusTcpClient("127.0.0.1", port=port)
    await c.connect()
    u32 = c.DATATYPE.UINT32

    async def counter() -> int:
        rr = await c.read_input_registers(w.sequence_address, count=2, device_id=unit)
        value = c.convert_from_registers(rr.registers, u32)
        assert isinstance(value, int)
        return value

    async def sweep() -> int:
        requests = 2
        end = await counter()
        start = max(0, end - length)
        n, pos = end - start, start % length
        regs, filled = np.empty(n, dtype=np.uint16), 0
        first = min(n, length - pos)
        for seg_addr, seg_len in ((pos, first), (0, n - first)):
            for a in range(seg_addr, seg_addr + seg_len, 125):
                cnt = min(125, seg_addr + seg_len - a)
                rr = await c.read_input_registers(ring + a, count=cnt, device_id=unit)
                regs[filled : filled + cnt] = rr.registers
                filled += cnt
                requests += 1
        lost = min(n, max(0, await counter() - length - start))
        samples = regs[lost:].view(np.int16).astype(np.float32) * np.float32(w.scale)
        assert samples.shape[0] == length
        return requests

    async def close() -> None:
        c.close()

    return sweep, close


async def ours(port: int, unit: int) -> tuple[Sweep, Close]:
    cfg = ModbusDevice(host="127.0.0.1", port=port, unit_id=unit, waveforms=[M.ring_waveform("v")])
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 10)
    col = ModbusCollector(
        f"d{unit}", cfg, {"v": Channel(kind="vibration", sample_rate_hz=FS)}, out, SystemClock()
    )
    w = cfg.waveforms[0]
    await col.transport.connect()

    async def sweep() -> int:
        before = col.counters.reads
        block = await col._read_ring(w, _RingCursor(), FS)  # a fresh cursor: the whole ring
        assert block is not None
        assert block.samples.shape[0] == w.ring_length
        await out.put(block)
        assert await out.get() is block
        return col.counters.reads - before

    return sweep, col.transport.close


def measure(port: int, devices: int) -> tuple[float, float]:
    """CPU seconds per request of the bare loop and of ours, ``devices`` devices at a time."""

    async def main() -> tuple[float, float]:
        sides = [[await fn(port, u) for u in range(1, devices + 1)] for fn in (bare, ours)]
        cpu, requests = [0.0, 0.0], [0, 0]
        try:
            for r in range(-1, ROUNDS[devices]):  # round -1 warms up
                for side in (0, 1) if r % 2 else (1, 0):
                    c0 = time.process_time()
                    n = await asyncio.gather(*(sweep() for sweep, _ in sides[side]))
                    if r >= 0:
                        cpu[side] += time.process_time() - c0
                        requests[side] += sum(n)
        finally:
            for side in sides:
                for _, close in side:
                    await close()
        return cpu[0] / requests[0], cpu[1] / requests[1]

    return asyncio.run(main())


def requests_per_channel_s(period_s: float) -> float:
    """Requests per second to follow one 25.6 kHz ring polled every ``period_s`` (the
    collector's default): the new samples in 125-register reads, one more where the ring
    wraps (counted every poll), and the two counter reads."""
    return (math.ceil(FS * period_s / 125) + 1 + 2) / period_s


def test_bench_collector_vs_bare_pymodbus(bench: Bench) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.modbus_ring_server", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert "listening" in server.stdout.readline()
    try:
        period = M.ring_waveform("v").period_s
        for devices in (1, 16):
            per_b, per_o = measure(port, devices)
            channels = 1 / (per_o * requests_per_channel_s(period))
            print(
                f"\n[bench] modbus {devices:2d} device(s): ours {per_o * 1e6:.0f} us CPU per "
                f"request, bare pymodbus {per_b * 1e6:.0f} us; CPU ratio {per_o / per_b:.2f}x "
                f"(goal {GOAL}); one core collects {channels:.1f} waveform channels at 25.6 kHz "
                f"polled every {period} s (bare: "
                f"{1 / (per_b * requests_per_channel_s(period)):.1f})"
            )
            bench.record(
                f"CPU per request (ring reads of 125 registers), {devices} device(s)",
                per_o * 1e6,
                "us",
                baseline=per_b * 1e6,
                baseline_name="bare pymodbus client",
                goal=GOAL,
            )
            bench.record(
                f"25.6 kHz waveform channels per core at {period} s polls, {devices} device(s)",
                channels,
                "channels",
                goal="report how many",
            )
    finally:
        server.terminate()
        server.wait()
