"""A running simulation: a scenario's machines in a ``Plant``, served over Modbus TCP and
optionally Modbus RTU (on a pseudo-terminal pair) and OPC UA, with the scenario's fault
injections scheduled on the same clock (Modbus injections apply to TCP and RTU alike)."""

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
from simulators.serial_link import PtyLink

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
        rtu: bool = False,
        rtu_baudrate: int = 115200,
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
        self.rtu_link: PtyLink | None = PtyLink() if rtu else None
        self.rtu_baudrate = rtu_baudrate
        self.rtu: MachineModbusServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def rtu_client_path(self) -> str | None:
        """The serial device a Modbus RTU client opens (the other end of the link)."""
        if self.rtu_link is None or self.rtu is None:
            return None
        return self.rtu_link.b_path

    def _modbus_servers(self) -> list[MachineModbusServer]:
        return [s for s in (self.modbus, self.rtu) if s is not None]

    async def start(self) -> None:
        if self.modbus is not None:
            await self.modbus.start()
            self.plant.publishers.append(self.modbus)
        if self.rtu_link is not None:
            await self.rtu_link.start()
            self.rtu = MachineModbusServer(
                self.machines, serial_port=self.rtu_link.a_path, baudrate=self.rtu_baudrate
            )
            await self.rtu.start()
            self.plant.publishers.append(self.rtu)
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
        servers = self._modbus_servers()
        for s in servers:
            s.inject(inj.type, **inj.params())
        if inj.duration_s > 0 and inj.type != "drop_connections":
            await self.clock.sleep(inj.duration_s)
            for s in servers:
                s.clear(inj.type)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.plant.stop()
        for s in self._modbus_servers():
            await s.stop()
        if self.rtu_link is not None:
            await self.rtu_link.stop()
        if self.opcua is not None:
            await self.opcua.stop()
