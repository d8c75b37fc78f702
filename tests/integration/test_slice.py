"""The thin slice end to end: simulated machines on a real pymodbus server -> Modbus collector ->
DSP -> SQLite journal, plus start-up with the device down and recovery after a device restart."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from gateway.config import parse_config
from gateway.core.records import FeatureFrame, SampleBlock
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from simulators.machine import Machine, MachineSpec
from tests.conftest import Sim, plant_toml, small_spec, wait_until


class Frames:
    """Collects frames from the pipeline and fires an event on each."""

    def __init__(self) -> None:
        self.frames: list[FeatureFrame] = []
        self.event = asyncio.Event()

    def __call__(self, f: FeatureFrame) -> None:
        self.frames.append(f)
        self.event.set()

    def of(self, channel: str) -> list[FeatureFrame]:
        return [f for f in self.frames if f.channel == channel]


def healthy_rms(spec: MachineSpec) -> float:
    return math.sqrt(sum(a * a / 2 for a in spec.harmonics_g) + spec.noise_g**2)


async def test_slice_end_to_end(modbus_sim: Sim, port: int, tmp_path: Path) -> None:
    cfg = parse_config(plant_toml(port, tmp_path), base_dir=tmp_path)
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    await pipeline.start()
    try:
        await wait_until(
            lambda: (
                len(frames.of("m1_vib")) >= 20
                and len(frames.of("m2_temp")) >= 3
                and len(frames.of("m2_vib")) >= 20
            ),
            frames.event,
        )
    finally:
        assert await pipeline.stop()

    spec1 = modbus_sim.machines[0].spec
    rms1 = np.array([f.as_dict()["rms"] for f in frames.of("m1_vib")])
    # the healthy machine's RMS is what its physics says (harmonics + noise), within quantisation
    np.testing.assert_allclose(rms1, healthy_rms(spec1), rtol=0.08)
    # the imbalanced one grew its 1x component: RMS well above the healthy level at the end
    assert frames.of("m2_vib")[-1].as_dict()["rms"] > 3 * healthy_rms(spec1)
    temp = frames.of("m1_temp")[-1].as_dict()["value"]
    assert temp == pytest.approx(modbus_sim.machines[0].temperature_c, abs=0.5)
    # contiguous windows: hop apart in source time, no gaps, nothing lost
    starts = np.array([f.start_ts_ns for f in frames.of("m1_vib")])
    np.testing.assert_allclose(np.diff(starts), 512 / 5120 * 1e9, atol=2)
    assert pipeline.dsp.status()["gaps"] == {"m1_vib": 0, "m2_vib": 0}
    assert all(c.counters.samples_lost == 0 for c in pipeline.collectors)
    assert pipeline.samples.dropped == 0
    assert pipeline.records.dropped == 0
    # everything computed is in the journal after the drain
    j = Journal(cfg.store_path())
    try:
        assert j.count("feature") == len(frames.frames)
        stored = j.read("check", 100_000)
        assert {r.asset for r in stored} == {"m1", "m2"}
        vib = [r for r in stored if r.channel == "m1_vib"]
        assert vib[0].payload["units"]["rms"] == "g"
        assert vib[0].payload["features"]["rms"] == pytest.approx(rms1[0])
    finally:
        j.close()


async def test_device_down_at_start_then_up_then_restarted(
    port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = parse_config(plant_toml(port, tmp_path, units=1), base_dir=tmp_path)
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    collector = pipeline.collectors[0]
    caplog.set_level(logging.INFO, logger="gateway")
    await pipeline.start()  # nothing listens on the port yet: the gateway starts anyway
    try:
        await collector.wait_state("unreachable")
        # keep failing for a while: several attempts, one log line
        await wait_until(lambda: collector.counters.failed_connects >= 3, collector.changed)
        server = Sim([Machine(small_spec("m1"), seed=5)], port)
        await server.start()
        await asyncio.wait_for(collector.wait_state("connected"), 30)
        await wait_until(lambda: len(frames.of("m1_vib")) >= 3, frames.event)
        # device restart: its sample counter starts again from zero
        await server.stop()
        await asyncio.wait_for(collector.wait_state("unreachable"), 30)
        server = Sim([Machine(small_spec("m1"), seed=6)], port)
        await server.start()
        await asyncio.wait_for(collector.wait_state("connected"), 30)
        n = len(frames.of("m1_vib"))
        await wait_until(lambda: len(frames.of("m1_vib")) >= n + 3, frames.event)
        await server.stop()
    finally:
        await pipeline.stop()
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in msgs) == 2  # once per outage, not per attempt
    assert sum("recovered" in m for m in msgs) == 2
    assert collector.counters.connects == 2
    record = pipeline.supervisor.records["modbus:m1"]
    assert record.restarts == 0  # recovered inside the task: nothing crashed, nothing dead
    assert record.state == "cancelled"  # ended by the shutdown, not by an error
    assert pipeline.dsp.status()["gaps"] == {"m1_vib": 1}  # the restart broke the stream once


async def test_shutdown_drains_queued_work_into_the_store(port: int, tmp_path: Path) -> None:
    """Blocks still queued when stop() is called are framed, featured and stored."""
    cfg = parse_config(
        plant_toml(port, tmp_path, units=1, window=1000, hop=1000), base_dir=tmp_path
    )
    pipeline = Pipeline(cfg)
    # the device stays unreachable; feed the samples queue directly
    for i in range(10):
        samples = np.full(1000, float(i), dtype=np.float32)
        await pipeline.samples.put(
            SampleBlock("m1_vib", 10**18 + i * 10**9, 0, 5120.0, samples, i * 1000)
        )
    await pipeline.start()
    assert await pipeline.stop()
    j = Journal(cfg.store_path())
    try:
        rows = j.read("check", 100)
    finally:
        j.close()
    assert [r.payload["features"]["mean"] for r in rows] == [float(i) for i in range(10)]


async def test_shutdown_deadline_bounds_a_stuck_stage(
    port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stage that never finishes draining cannot hold shutdown past the deadline."""
    text = plant_toml(port, tmp_path, units=1).replace(
        "shutdown_deadline_s = 10", "shutdown_deadline_s = 0.5"
    )
    cfg = parse_config(text, base_dir=tmp_path)
    pipeline = Pipeline(cfg)
    entered = asyncio.Event()

    class Stuck:
        name = "dsp"

        async def run(self) -> None:
            entered.set()
            await asyncio.Event().wait()  # ignores the closed input

    pipeline.dsp = Stuck()  # type: ignore[assignment]
    await pipeline.start()
    await entered.wait()
    assert await pipeline.stop() is False
    assert any("shutdown deadline (0.5s) passed" in r.getMessage() for r in caplog.records)
    assert pipeline.supervisor.records["dsp"].state == "cancelled"
