"""``pdm-gateway demo``: simulated machines on a real Modbus server, the gateway reading them, and
a live terminal view of what it sees. Embedded defaults: SQLite store, no uplink."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from gateway.config.loader import parse_config
from gateway.config.schema import GatewayConfig
from gateway.core.records import FeatureFrame
from gateway.runtime.pipeline import Pipeline
from simulators import modbus_map as M
from simulators.machine import Fault, Machine, MachineSpec
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant


def _demo_spec(name: str, **kw: object) -> MachineSpec:
    """One 5.12 kHz vibration channel and a temperature; a fast thermal response to watch."""
    base: dict[str, object] = {
        "vibration_channels": 1,
        "vibration_rate_hz": 5120.0,
        "acoustic_rate_hz": 0.0,
        "thermal_tau_s": 120.0,
    }
    return MachineSpec(name=name, **{**base, **kw})  # type: ignore[arg-type]


#: (asset, description, simulated machine)
DEMO_MACHINES: list[tuple[str, str, MachineSpec]] = [
    ("pump1", "healthy centrifugal pump", _demo_spec("pump1")),
    (
        "fan2",
        "fan, imbalance developing",
        _demo_spec("fan2", faults=(Fault("imbalance", 10, 130, 0.6, 1.0),)),
    ),
    (
        "motor3",
        "motor, outer-race defect developing",
        _demo_spec("motor3", shaft_hz=29.5, faults=(Fault("outer_race", 10, 130, 2.0, 1.0),)),
    ),
]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller binds it right away)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def demo_config_toml(port: int, state_dir: Path, sample_rate_hz: float = 5120.0) -> str:
    """The demo's embedded configuration: one Modbus TCP device per simulated machine."""
    parts = [
        f'[gateway]\nname = "demo"\nstate_dir = "{state_dir.as_posix()}"\n',
        "[dsp]\nwindow = 4096\nhop = 2048\n",
        '[store]\nsynchronous = "NORMAL"\n',
        "[runtime.http]\nport = 0\n",
    ]
    for unit, (asset, desc, spec) in enumerate(DEMO_MACHINES, start=1):
        parts.append(
            f"""
[channels.{asset}_vib]
kind = "vibration"
sample_rate_hz = {sample_rate_hz}

[channels.{asset}_temp]
kind = "temperature"

[assets.{asset}]
description = "{desc}"
channels = ["{asset}_vib", "{asset}_temp"]
shaft_speed_hz = {spec.shaft_hz}

[assets.{asset}.bearing]
balls = {spec.bearing.balls}
ball_diameter_mm = {spec.bearing.ball_diameter_mm}
pitch_diameter_mm = {spec.bearing.pitch_diameter_mm}

"""
            + M.device_toml(
                asset,
                port,
                unit,
                f"{asset}_vib",
                f"{asset}_temp",
                period_s=0.25,
                settings="timeout_s = 2.0",
            )
        )
    return "\n".join(parts)


class LiveView:
    """Latest features per asset and channel, rendered as a table once a second."""

    def __init__(self, cfg: GatewayConfig, out: TextIO) -> None:
        self.cfg, self.out = cfg, out
        self.latest: dict[str, FeatureFrame] = {}
        self.tty = out.isatty()

    def on_frame(self, frame: FeatureFrame) -> None:
        self.latest[frame.channel] = frame

    def render(self, pipeline: Pipeline, elapsed_s: float) -> str:
        nan = float("nan")
        states = {c.device_id: c.state for c in pipeline.collectors}
        lines = [
            f"pdm-gateway demo  t={elapsed_s:6.1f}s   (Ctrl-C to stop)",
            f"{'asset':8} {'device':12} {'RMS g':>7} {'v mm/s':>7} {'crest':>6} {'kurt':>6} "
            f"{'1x g':>6} {'BPFO g':>7} {'temp C':>7} {'dT/min':>7}  about",
        ]
        for asset, a in self.cfg.assets.items():
            vib = self.latest.get(f"{asset}_vib")
            tmp = self.latest.get(f"{asset}_temp")
            v = vib.as_dict() if vib else {}
            t = tmp.as_dict() if tmp else {}
            lines.append(
                f"{asset:8} {states.get(asset, '-'):12} {v.get('rms', nan):7.4f} "
                f"{v.get('velocity_rms', nan):7.2f} {v.get('crest_factor', nan):6.2f} "
                f"{v.get('kurtosis', nan):6.2f} {v.get('order_1x_amp', nan):6.3f} "
                f"{v.get('env_bpfo_amp', nan):7.4f} {t.get('value', nan):7.2f} "
                f"{t.get('rate_per_min', nan):7.2f}  {a.description}"
            )
        written = pipeline.store.written if pipeline.store else 0
        queues = ", ".join(
            f"{q.name} {len(q)}/{q.maxsize} dropped {q.dropped}"
            for q in (pipeline.samples, pipeline.records)
        )
        lines.append(f"store: {written} records in {self.cfg.store_path()}   queues: {queues}")
        return "\n".join(lines)

    def show(self, text: str) -> None:
        if self.tty:
            self.out.write("\x1b[H\x1b[J" + text + "\n")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()


async def run_demo(duration_s: float | None, state_dir: Path | None, stop: asyncio.Event) -> int:
    """Run simulators + gateway until ``stop`` is set or ``duration_s`` passes."""
    tmp = None
    if state_dir is None:
        tmp = tempfile.mkdtemp(prefix="pdm-demo-")
        state_dir = Path(tmp)
    port = free_port()
    machines = [Machine(spec, seed=i) for i, (_, _, spec) in enumerate(DEMO_MACHINES)]
    sim = MachineModbusServer(machines, port=port)
    await sim.start()
    plant = Plant(machines)
    plant.publishers.append(sim)
    plant.start()
    cfg = parse_config(demo_config_toml(port, state_dir), base_dir=state_dir, source="<demo>")
    view = LiveView(cfg, sys.stdout)
    pipeline = Pipeline(cfg, on_frame=view.on_frame)
    await pipeline.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        while not stop.is_set():
            elapsed = loop.time() - t0
            if duration_s is not None and elapsed >= duration_s:
                break
            view.show(view.render(pipeline, elapsed))
            wait = 1.0 if view.tty else 5.0
            if duration_s is not None:
                wait = min(wait, duration_s - elapsed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
    finally:
        await pipeline.stop()
        await plant.stop()
        await sim.stop()
        view.show(view.render(pipeline, loop.time() - t0))
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
