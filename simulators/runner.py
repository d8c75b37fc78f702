"""A running simulation: a scenario's machines in a ``Plant``, served over Modbus TCP (and
optionally OPC UA), with the scenario's fault injections scheduled on the same clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from gateway.core.clock import Clock, SystemClock
from simulators.machine import Machine
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant
from simulators.scenario import InjectionCfg, Scenario, ground_truth, write_ground_truth

log = logging.getLogger(__name__)


class Simulation:
    """``start()`` brings every server up (raising ``ResourceUnavailableError`` on a busy port),
    then starts the plant and the injection schedule; ``stop()`` tears it all down."""

    def __init__(
        self,
        name: str,
        scenario: Scenario,
        machines: list[Machine],
        *,
        host: str = "127.0.0.1",
        modbus_port: int | None = 5020,
        opcua_port: int | None = None,
        seed: int = 0,
        speed: float = 1.0,
        truth_path: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name, self.scenario, self.machines = name, scenario, machines
        self.seed, self.speed, self.truth_path = seed, speed, truth_path
        self.clock = clock or SystemClock()
        self.plant = Plant(machines, self.clock)
        self.modbus = (
            MachineModbusServer(machines, host=host, port=modbus_port)
            if modbus_port is not None
            else None
        )
        self.opcua = None
        if opcua_port is not None:
            from simulators.opcua_server import MachineOpcUaServer

            self.opcua = MachineOpcUaServer(machines, host=host, port=opcua_port)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.modbus is not None:
            await self.modbus.start()
            self.plant.publishers.append(self.modbus)
        if self.opcua is not None:
            await self.opcua.start()
            self.plant.publishers.append(self.opcua)
        if self.truth_path is not None:
            write_ground_truth(
                self.truth_path,
                ground_truth(
                    self.name,
                    self.scenario,
                    self.machines,
                    seed=self.seed,
                    speed=self.speed,
                    start_unix_ns=self.clock.now_ns(),
                ),
            )
        self.plant.start()
        self._tasks = [
            asyncio.create_task(self._injection(inj), name=f"inject:{inj.type}")
            for inj in self.scenario.injections
        ]

    async def _injection(self, inj: InjectionCfg) -> None:
        await self.clock.sleep(inj.at_s - self.plant.elapsed_s())
        if inj.type == "opcua_restart":
            if self.opcua is not None:
                await self.opcua.restart()
            return
        if self.modbus is None:
            return
        self.modbus.inject(inj.type, **inj.params())
        if inj.duration_s > 0 and inj.type != "drop_connections":
            await self.clock.sleep(inj.duration_s)
            self.modbus.clear(inj.type)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.plant.stop()
        if self.modbus is not None:
            await self.modbus.stop()
        if self.opcua is not None:
            await self.opcua.stop()
