"""Simulator generation cost (``make bench``): 16 machines, each with 3 vibration channels at
25.6 kHz, a microphone at 48 kHz and a temperature, generated in 0.1 s blocks. Printed as a
fraction of real time on one core (goal: below 0.3), next to a baseline measured in the same
run: drawing the same number of Gaussian samples with numpy."""

from __future__ import annotations

import time

import numpy as np

from simulators.machine import Fault, Machine, MachineSpec
from tests.benchmarks.conftest import Bench

MACHINES = 16
SECONDS = 5.0
STEP = 0.1
FAULTS = [
    (),
    (Fault("outer_race", 0, 10, 1.0),),
    (Fault("inner_race", 0, 10, 1.0),),
    (Fault("imbalance", 0, 10, 0.5),),
]


def test_bench_sixteen_machines_real_time_fraction(bench: Bench) -> None:
    machines = [
        Machine(MachineSpec(name=f"m{i}", faults=FAULTS[i % len(FAULTS)]), seed=i)
        for i in range(MACHINES)
    ]
    samples = 0
    t0 = time.process_time()
    t = 0.0
    for _ in range(round(SECONDS / STEP)):
        t += STEP
        for m in machines:
            snap = m.advance(t)
            samples += sum(b.samples.shape[0] for b in snap.blocks)
    cost = time.process_time() - t0

    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for _ in range(round(SECONDS / STEP)):
        for _ in range(MACHINES):
            rng.standard_normal(samples // MACHINES // round(SECONDS / STEP))
    base = time.process_time() - t0
    expected = MACHINES * SECONDS * (3 * 25_600 + 48_000)
    assert samples == expected
    print(
        f"\n[bench] simulator: {MACHINES} machines x (3 x 25.6 kHz + 48 kHz) for {SECONDS:.0f} s: "
        f"{cost:.2f} s CPU -> {cost / SECONDS:.3f} of one core in real time (goal < 0.3); "
        f"ratio to bare numpy Gaussian draws of the same size: {cost / base:.1f}x"
    )
    bench.record(
        f"simulator, {MACHINES} machines: fraction of one core",
        cost / SECONDS,
        "cores",
        baseline=base / SECONDS,
        baseline_name="bare numpy Gaussian draws",
        goal="< 0.3 cores",
    )


def test_bench_generation_plus_modbus_publish(bench: Bench) -> None:
    """The same load, also written into a running Modbus server's registers (what serving costs
    on top of generation), as a fraction of real time."""
    import asyncio

    from gateway.demo import free_port
    from simulators.modbus_server import MachineModbusServer

    async def run() -> tuple[float, float]:
        machines = [
            Machine(MachineSpec(name=f"m{i}", faults=FAULTS[i % len(FAULTS)]), seed=i)
            for i in range(MACHINES)
        ]
        server = MachineModbusServer(machines, port=free_port())
        await server.start()
        gen = pub = 0.0
        t = 0.0
        try:
            for _ in range(round(SECONDS / STEP)):
                t += STEP
                for i, m in enumerate(machines):
                    c0 = time.process_time()
                    snap = m.advance(t)
                    c1 = time.process_time()
                    await server.publish(i, m, snap)
                    pub += time.process_time() - c1
                    gen += c1 - c0
        finally:
            await server.stop()
        return gen, pub

    gen, pub = asyncio.run(run())
    print(
        f"\n[bench] simulator serving: generation {gen / SECONDS:.3f} + Modbus register "
        f"publish {pub / SECONDS:.3f} = {(gen + pub) / SECONDS:.3f} of one core in real time; "
        f"publish/generation ratio {pub / gen:.2f}x"
    )
    bench.record(
        "simulator Modbus register publish: fraction of one core",
        pub / SECONDS,
        "cores",
        baseline=gen / SECONDS,
        baseline_name="generation",
    )
