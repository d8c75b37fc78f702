"""The end-to-end plant: which machines, on which protocol, developing which fault, and how fast
(each machine's own time scale brings its fault to functional failure ``FAIL_AFTER_S`` wall
seconds after the start). Shared by the test and the process that simulates the plant
(``tests.e2e.plantproc``)."""

from __future__ import annotations

from dataclasses import replace

from gateway.demo.plant import DemoMachine, model_base_spec
from simulators.machine import Machine, MachineSnapshot
from simulators.plant import Publisher
from simulators.scenario import DAY_S, load_scenario

#: wall seconds from the start until each fault reaches functional failure
FAIL_AFTER_S = 36.0
#: (asset, model/class, fault scenario or None): 16 machines, 6 healthy and 10 developing a
#: fault (every fault type; the bearing faults and misalignment over both protocols). Most are
#: on OPC UA: a Modbus waveform at 12.8 kHz costs about 100 requests a second per machine, and
#: with 16 machines on two shared cores the Modbus collectors already lose most samples to ring
#: overruns (the run prints how many)
PLANT = [
    ("pumpA", "motor-pump", None),
    ("pumpOR", "motor-pump", "outer-race"),
    ("pumpIR", "motor-pump", "inner-race"),
    ("pumpBL", "motor-pump", "ball"),
    ("pumpMS", "motor-pump", "misalignment"),
]
#: machines served over OPC UA (after the Modbus ones in the plant)
OPCUA_PLANT = [
    ("pumpOA", "motor-pump", None),
    ("pumpOB", "motor-pump", None),
    ("pumpOC", "motor-pump", None),
    ("fanOA", "fan", None),
    ("fanOB", "fan", None),
    ("pumpOX", "motor-pump", "outer-race"),
    ("pumpOI", "motor-pump", "inner-race"),
    ("pumpOL", "motor-pump", "ball"),
    ("pumpOM", "motor-pump", "misalignment"),
    ("fanOI", "fan", "imbalance"),
    ("fanOJ", "fan", "imbalance"),
]
NS = "urn:pdm-gateway:simulator"


class Served:
    """Hands a server the plant's machines ``first``..``first + count - 1``, renumbered from 0
    (each protocol server serves its own part of the plant)."""

    def __init__(self, server: Publisher, first: int, count: int) -> None:
        self.server, self.first, self.count = server, first, count

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        if self.first <= index < self.first + self.count:
            await self.server.publish(index - self.first, machine, snap)


def machines() -> tuple[list[DemoMachine], list[Machine]]:
    base = model_base_spec()
    demo: list[DemoMachine] = []
    sims: list[Machine] = []
    for i, (asset, cls, scenario) in enumerate(PLANT + OPCUA_PLANT):
        faults = load_scenario(scenario).faults if scenario else []
        fault = faults[0].to_fault() if faults else None
        shaft = 24.75 if cls == "motor-pump" else 16.5
        spec = replace(
            base, name=asset, shaft_hz=shaft, load=0.6 + 0.02 * i, faults=(fault,) if fault else ()
        )
        group = "group2_rigid" if cls == "motor-pump" else "group2_flexible"
        demo.append(DemoMachine(asset, scenario or "healthy", cls, group, spec))
        # each machine's own time scale brings its fault to failure at FAIL_AFTER_S
        accel = (fault.failure_s if fault else 30 * DAY_S) / FAIL_AFTER_S
        sims.append(Machine(spec, seed=200 + i, speed=accel))
    return demo, sims
