"""Scenarios: TOML files in ``simulators/scenarios/`` that say what the simulated machines do.

A scenario holds machine overrides (``[machine]``, any ``MachineSpec`` field), growing faults
(``[[faults]]``, times in machine days or seconds), sensor faults (``[[sensor_faults]]``, real
seconds) and protocol fault injections (``[[injections]]``, real seconds). ``faulty`` lists the
machine indices that get the faults (all by default); the others stay healthy. Every machine gets
seed ``seed + index``, so a run is reproducible.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from gateway.config.loader import validation_errors
from gateway.core.configbase import StrictModel
from gateway.core.errors import ConfigError
from simulators.machine import (
    FAULT_TYPES,
    SENSOR_FAULTS,
    BearingGeometry,
    Fault,
    Machine,
    MachineSpec,
    SensorFault,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DAY_S = 86_400.0
FaultType = Literal[
    "outer_race", "inner_race", "ball", "cage", "imbalance", "misalignment", "looseness", "gear"
]
assert set(FaultType.__args__) == set(FAULT_TYPES) - {"none"}  # type: ignore[attr-defined]


class FaultCfg(StrictModel):
    type: FaultType
    onset_days: float | None = Field(None, ge=0)
    failure_days: float | None = Field(None, gt=0)
    onset_s: float | None = Field(None, ge=0)
    failure_s: float | None = Field(None, gt=0)
    max_level: float = Field(1.0, gt=0)
    growth_exponent: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        onset = self.onset_s if self.onset_s is not None else (self.onset_days or 0) * DAY_S
        fail = self.failure_s if self.failure_s is not None else (self.failure_days or 0) * DAY_S
        if fail <= onset:
            raise ValueError("failure must come after onset")
        return self

    def to_fault(self) -> Fault:
        onset = self.onset_s if self.onset_s is not None else (self.onset_days or 0) * DAY_S
        fail = self.failure_s if self.failure_s is not None else (self.failure_days or 0) * DAY_S
        return Fault(self.type, onset, fail, self.max_level, self.growth_exponent)


class SensorFaultCfg(StrictModel):
    type: Literal["stuck", "spikes", "disconnected", "saturated"]
    channel: str = Field(pattern=r"^(vib[0-5]|mic|temp)$")
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    level: float = Field(5.0, gt=0)
    rate_hz: float = Field(5.0, gt=0)

    def to_fault(self) -> SensorFault:
        return SensorFault(
            self.type,
            self.channel,
            self.start_s,
            self.start_s + self.duration_s,
            self.level,
            self.rate_hz,
        )


class InjectionCfg(StrictModel):
    type: Literal[
        "drop_connections", "no_response", "exception", "latency", "corrupt_frames", "opcua_restart"
    ]
    at_s: float = Field(ge=0)
    duration_s: float = Field(0.0, ge=0)
    code: Literal["busy", "illegal_address"] = "busy"
    latency_s: float = Field(0.1, ge=0)
    jitter_s: float = Field(0.0, ge=0)

    def params(self) -> dict[str, Any]:
        if self.type == "exception":
            return {"code": self.code}
        if self.type == "latency":
            return {"latency_s": self.latency_s, "jitter_s": self.jitter_s}
        return {}


class BearingCfg(StrictModel):
    balls: int = Field(9, ge=3)
    ball_diameter_mm: float = Field(7.94, gt=0)
    pitch_diameter_mm: float = Field(39.04, gt=0)
    contact_angle_deg: float = Field(0.0, ge=0, lt=90)


class MachineCfg(StrictModel):
    """Overrides of ``MachineSpec`` defaults (same names and units)."""

    shaft_hz: float | None = Field(None, gt=0)
    speed_variation: float | None = Field(None, ge=0, lt=0.5)
    harmonics_g: tuple[float, float, float] | None = None
    noise_g: float | None = Field(None, ge=0)
    bearing: BearingCfg | None = None
    resonance_hz: float | None = Field(None, ge=500, le=12_000)
    gear_teeth: int | None = Field(None, ge=0)
    gear_mesh_g: float | None = Field(None, ge=0)
    vibration_channels: int | None = Field(None, ge=1, le=5)
    vibration_rate_hz: float | None = Field(None, ge=256, le=102_400)
    acoustic_rate_hz: float | None = Field(None, ge=0, le=48_000)
    load: float | None = Field(None, ge=0, le=1.5)
    ambient_c: float | None = None
    thermal_tau_s: float | None = Field(None, gt=0)


class Scenario(StrictModel):
    description: str = ""
    machine: MachineCfg = MachineCfg()
    faults: list[FaultCfg] = Field(default_factory=list)
    sensor_faults: list[SensorFaultCfg] = Field(default_factory=list)
    injections: list[InjectionCfg] = Field(default_factory=list)
    faulty: list[int] | None = None

    def machines(
        self, n: int, seed: int = 0, speed: float = 1.0, **overrides: Any
    ) -> list[Machine]:
        """``n`` machines named ``m1..mn``; ``overrides`` win over the scenario's ``[machine]``."""
        base = {k: v for k, v in self.machine.model_dump().items() if v is not None}
        if "bearing" in base:
            base["bearing"] = BearingGeometry(**base["bearing"])
        if "harmonics_g" in base:
            base["harmonics_g"] = tuple(base["harmonics_g"])
        base.update(overrides)
        known = {f.name for f in fields(MachineSpec)}
        unknown = set(base) - known
        if unknown:
            raise ValueError(f"unknown machine parameters: {sorted(unknown)}")
        out = []
        for i in range(n):
            faulty = self.faulty is None or i in self.faulty
            spec = MachineSpec(
                name=f"m{i + 1}",
                **base,
                faults=tuple(f.to_fault() for f in self.faults) if faulty else (),
                sensor_faults=tuple(f.to_fault() for f in self.sensor_faults) if faulty else (),
            )
            out.append(Machine(spec, seed=seed + i, speed=speed))
        return out


assert set(SensorFaultCfg.model_fields["type"].annotation.__args__) == set(SENSOR_FAULTS)  # type: ignore[union-attr]


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (``outer-race``) or by path. Raises ``ConfigError`` with key paths."""
    p = Path(name_or_path)
    if not p.suffix:
        p = SCENARIO_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise ConfigError(
            [("", f"unknown scenario {name_or_path!r}; known: {', '.join(scenario_names())}")]
        )
    try:
        return Scenario.model_validate(tomllib.loads(p.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"{p}: invalid TOML: {exc}")]) from None
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc), str(p)) from None


def ground_truth(
    name: str,
    scenario: Scenario,
    machines: list[Machine],
    *,
    seed: int,
    speed: float,
    start_unix_ns: int,
    points: int = 50,
) -> dict[str, Any]:
    """What really happens in the run: faults with onset and failure in machine and wall time,
    severity over machine time, sensor faults and injections in wall time."""

    def wall(t_machine_s: float) -> int:
        return start_unix_ns + round(t_machine_s / speed * 1e9)

    out_machines = []
    for i, m in enumerate(machines):
        faults = [
            {
                "type": f.type,
                "onset_s": f.onset_s,
                "failure_s": f.failure_s,
                "onset_unix_ns": wall(f.onset_s),
                "failure_unix_ns": wall(f.failure_s),
                "max_level": f.max_level,
                "severity": [
                    [t, float(f.severity(t))]
                    for t in [f.failure_s * k / (points - 1) for k in range(points)]
                ],
            }
            for f in m.spec.faults
        ]
        sensors = [
            {
                "type": f.type,
                "channel": f.channel,
                "start_unix_ns": start_unix_ns + round(f.start_s * 1e9),
                "end_unix_ns": start_unix_ns + round(f.end_s * 1e9),
            }
            for f in m.spec.sensor_faults
        ]
        out_machines.append(
            {
                "index": i,
                "unit_id": i + 1,
                "name": m.spec.name,
                "shaft_hz": m.spec.shaft_hz,
                "faults": faults,
                "sensor_faults": sensors,
                "bearing_orders": m.spec.bearing.orders(),
            }
        )
    return {
        "scenario": name,
        "seed": seed,
        "speed": speed,
        "start_unix_ns": start_unix_ns,
        "machines": out_machines,
        "injections": [
            {**inj.model_dump(), "at_unix_ns": start_unix_ns + round(inj.at_s * 1e9)}
            for inj in scenario.injections
        ],
    }


def write_ground_truth(path: Path, truth: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(truth, indent=1))
    tmp.replace(path)
