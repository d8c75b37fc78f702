"""The demo plant: three simulated machines of the shipped models' classes (one develops an
outer-race bearing defect, the others stay healthy) and the gateway configuration that reads,
scores and alarms on them.

Machine time runs ``acceleration`` times faster than wall time, so the defect, which takes 25
machine days from onset to failure, grows over a few wall minutes. Vibration is one 12.8 kHz
channel per machine (the models accept any rate above 10 kHz); the simulator's broadband noise
is scaled to keep the noise density the models were trained with at 25.6 kHz.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import gateway
from gateway.config.loader import validation_errors
from gateway.config.schema import GatewayConfig, cross_check
from gateway.core.errors import ConfigError
from gateway.inference.features import dsp_for
from gateway.inference.manifest import read_manifest
from simulators import modbus_map as M
from simulators.machine import Fault, Machine, MachineSpec
from simulators.scenario import load_scenario

#: vibration sample rate of the demo machines, Hz
FS = 12_800.0
#: the rate the shipped models were trained at, Hz (the simulator's noise is given per sample)
TRAINING_FS = 25_600.0
#: temperature alert levels, degC (healthy machines settle near 46 degC)
TEMP_RAISE_C, TEMP_CLEAR_C = 65.0, 60.0
#: the score rule raises at the model threshold x this with severity alarm
ALARM_FACTOR = 4.0


@dataclass(frozen=True)
class DemoMachine:
    asset: str
    description: str
    model_id: str  #: shipped model directory under ``models/``
    machine_class: str  #: ISO 20816-3 group of the asset
    spec: MachineSpec


def models_dir(root: Path | None = None) -> Path:
    """The shipped models: ``models/`` in ``root`` (default: the source tree holding the
    ``gateway`` package); ``FileNotFoundError`` with a one-line reason when absent (an installed
    wheel does not carry them)."""
    d = (root or Path(gateway.__file__).resolve().parents[1]) / "models"
    missing = [m for m in ("motor-pump", "fan") if not (d / m / "manifest.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"the demo needs the shipped models in {d} (missing: {', '.join(missing)}); "
            "run it from a source checkout, or build them with 'make models'"
        )
    return d


def outer_race_fault() -> Fault:
    """The ``outer-race`` scenario's defect: onset at machine day 5, failure at day 30."""
    return load_scenario("outer-race").faults[0].to_fault()


def acceleration_for(failure_after_s: float) -> float:
    """Machine seconds per wall second that bring the defect to failure after
    ``failure_after_s`` wall seconds."""
    return outer_race_fault().failure_s / failure_after_s


def model_base_spec() -> MachineSpec:
    """A machine with one vibration channel at ``FS``, its sensor noise scaled from the rate the
    shipped models were trained at, and the healthy scenario's speed variation."""
    healthy = load_scenario("healthy").machine
    return MachineSpec(
        vibration_channels=1,
        vibration_rate_hz=FS,
        acoustic_rate_hz=0.0,
        noise_g=MachineSpec.noise_g * math.sqrt(FS / TRAINING_FS),
        speed_variation=healthy.speed_variation or 0.0,
    )


def demo_machines() -> list[DemoMachine]:
    """The plant: a healthy pump, a healthy fan, a motor-driven pump whose outer race fails."""
    base = model_base_spec()
    return [
        DemoMachine(
            "pump1",
            "motor-driven pump, healthy",
            "motor-pump",
            "group2_rigid",
            replace(base, name="pump1", shaft_hz=24.75, load=0.6),
        ),
        DemoMachine(
            "fan2",
            "belt-driven fan, healthy",
            "fan",
            "group2_flexible",
            replace(base, name="fan2", shaft_hz=16.5, load=0.8),
        ),
        DemoMachine(
            "pump3",
            "motor-driven pump, outer-race defect developing",
            "motor-pump",
            "group2_rigid",
            replace(base, name="pump3", shaft_hz=24.75, load=0.7, faults=(outer_race_fault(),)),
        ),
    ]


def simulated(machines: list[DemoMachine], acceleration: float) -> list[Machine]:
    return [Machine(m.spec, seed=100 + i, speed=acceleration) for i, m in enumerate(machines)]


def _rules(m: DemoMachine, threshold: float) -> dict[str, dict[str, Any]]:
    a = m.asset
    return {
        f"{a}_score": {
            "asset": a,
            "source": "score",
            "raise_level": threshold,
            "clear_level": 0.8 * threshold,
            "severity": "warning",
        },
        f"{a}_score_high": {
            "asset": a,
            "source": "score",
            "raise_level": ALARM_FACTOR * threshold,
            "clear_level": 0.8 * ALARM_FACTOR * threshold,
            "severity": "alarm",
        },
        f"{a}_iso": {"asset": a, "source": "iso20816", "channel": f"{a}_vib", "zone": "C"},
        f"{a}_temp": {
            "asset": a,
            "source": "feature",
            "channel": f"{a}_temp",
            "feature": "value",
            "raise_level": TEMP_RAISE_C,
            "clear_level": TEMP_CLEAR_C,
        },
    }


def demo_config(
    machines: list[DemoMachine],
    port: int,
    state_dir: Path,
    models: Path,
    opcua_port: int | None = None,
) -> GatewayConfig:
    """The embedded configuration: one Modbus TCP device per machine on ``port``, the shipped
    models on the assets, score/ISO 20816/temperature rules, a SQLite store in ``state_dir``,
    no uplink, health and metrics on a free loopback port; the OPC UA server on
    127.0.0.1:``opcua_port`` when given."""
    manifests = {m.model_id: read_manifest(models / m.model_id) for m in machines}
    first = manifests[machines[0].model_id]
    raw: dict[str, Any] = {
        "gateway": {"name": "demo", "state_dir": state_dir.as_posix()},
        "dsp": dsp_for(first.dsp, FS).model_dump(mode="json"),
        "store": {"synchronous": "NORMAL"},
        "runtime": {"http": {"port": 0}},  # a free port: demos and gateways side by side
        "models": {
            "assets": {m.asset: m.model_id for m in machines},
            "paths": {k: (models / k).as_posix() for k in manifests},
        },
        "channels": {},
        "assets": {},
        "alerts": {"rules": {}},
    }
    if opcua_port is not None:
        raw["opcua_server"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": opcua_port,
            "security_modes": ["None"],
            "allow_anonymous": True,
        }
    devices = []
    for unit, m in enumerate(machines, start=1):
        a, b = m.asset, m.spec.bearing
        raw["channels"][f"{a}_vib"] = {"kind": "vibration", "sample_rate_hz": FS}
        raw["channels"][f"{a}_temp"] = {"kind": "temperature"}
        raw["assets"][a] = {
            "description": m.description,
            "channels": [f"{a}_vib", f"{a}_temp"],
            "machine_class": m.machine_class,
            "shaft_speed_hz": m.spec.shaft_hz,
            "bearing": {
                "balls": b.balls,
                "ball_diameter_mm": b.ball_diameter_mm,
                "pitch_diameter_mm": b.pitch_diameter_mm,
            },
        }
        raw["alerts"]["rules"].update(_rules(m, manifests[m.model_id].threshold))
        devices.append(
            M.device_toml(
                a, port, unit, f"{a}_vib", f"{a}_temp", period_s=0.25, settings="timeout_s = 2.0"
            )
        )
    raw["devices"] = tomllib.loads("\n".join(devices))["devices"]
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc), "<demo>") from None
    errors = cross_check(cfg)
    if errors:
        raise ConfigError(errors, "<demo>")
    return cfg
