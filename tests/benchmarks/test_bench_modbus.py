"""Modbus collection cost (``make bench``): our collector's read path (request with busy
retry and error classification, then vectorised int16 decode) against a bare pymodbus client
loop on the same server in the same run, with 1 and 16 devices. The server runs in its own
process, so the CPU time measured is the client's alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
from pymodbus.client import AsyncModbusTcpClient

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice
from gateway.collectors.modbus.decode import decode_waveform
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue
from simulators import modbus_map as M
from tests.benchmarks.conftest import Bench

READS = 1000  # 125-register reads per device


async def bare(port: int, unit: int) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=port)
    await c.connect()
    for i in range(READS):
        rr = await c.read_input_registers(
            M.ring_address(0) + (i % 60) * 125, count=125, device_id=unit
        )
        np.asarray(rr.registers, dtype=np.uint16).view(np.int16).astype(np.float32) * 0.001
    c.close()


async def ours(port: int, unit: int) -> None:
    cfg = ModbusDevice(
        host="127.0.0.1",
        port=port,
        unit_id=unit,
        waveforms=[M.ring_waveform("v")],
    )
    col = ModbusCollector(
        f"d{unit}",
        cfg,
        {"v": Channel(kind="vibration", sample_rate_hz=25600)},
        BoundedQueue("q", 10),
        SystemClock(),
    )
    await col.transport.connect()
    for i in range(READS):
        regs = await col._read(4, M.ring_address(0) + (i % 60) * 125, 125)
        decode_waveform(regs, "int16", 0.001)
    await col.transport.close()


def run(fn, port: int, devices: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    async def main() -> None:
        await asyncio.gather(*(fn(port, u) for u in range(1, devices + 1)))

    c0, w0 = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.process_time() - c0, time.perf_counter() - w0


def test_bench_collector_vs_bare_pymodbus(bench: Bench) -> None:
    port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "simulate",
            "--scenario",
            "healthy",
            "--machines",
            "16",
            "--modbus-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    assert "listening" in sim.stdout.readline()
    try:
        for devices in (1, 16):
            run(bare, port, devices)  # warm up connections and caches
            rounds = [(run(bare, port, devices), run(ours, port, devices)) for _ in range(3)]
            cpu_b, wall_b = min(b for b, _ in rounds)  # interleaved, best of three each
            cpu_o, wall_o = min(o for _, o in rounds)
            reads = READS * devices
            regs_per_cpu_s = reads * 125 / cpu_o
            print(
                f"\n[bench] modbus {devices:2d} device(s): ours {reads * 125 / wall_o:,.0f} "
                f"regs/s, "
                f"{cpu_o / reads * 1e6:.0f} us CPU per 125-register read; bare pymodbus "
                f"{reads * 125 / wall_b:,.0f} regs/s, {cpu_b / reads * 1e6:.0f} us; CPU ratio "
                f"{cpu_o / cpu_b:.2f}x (goal <= 1.1); one core collects "
                f"{regs_per_cpu_s / 25_600:.1f} waveform channels at 25.6 kHz"
            )
            bench.record(
                f"CPU per 125-register read, {devices} device(s)",
                cpu_o / reads * 1e6,
                "us",
                baseline=cpu_b / reads * 1e6,
                baseline_name="bare pymodbus client",
                goal="<= 1.1x",
            )
            bench.record(
                f"25.6 kHz waveform channels per core, {devices} device(s)",
                regs_per_cpu_s / 25_600,
                "channels",
            )
    finally:
        sim.terminate()
        sim.wait()
