"""Serve simulated machines over a real Modbus TCP server (pymodbus), one unit id per machine.

Register map of every unit (read with function 3 or 4; all multi-register values ABCD):

====================  =======  =====================================================
address               type     content
====================  =======  =====================================================
0-1                   uint32   vibration sample counter (samples written since start)
2-3                   float32  temperature, degC
4-5                   float32  shaft speed, Hz
6                     uint16   fault severity, per mille
100 .. 100+RING-1     int16    vibration ring: sample k at 100 + k % RING, VIB_SCALE g/LSB
====================  =======  =====================================================

Samples are written before the counter, so a client that reads counter ``c`` can read every
sample ``k`` with ``c - RING <= k < c``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ResourceUnavailableError
from simulators.machine import Machine

log = logging.getLogger(__name__)

COUNTER_ADDR = 0
TEMPERATURE_ADDR = 2
SPEED_ADDR = 4
SEVERITY_ADDR = 6
RING_ADDR = 100
RING_LENGTH = 8192
VIB_SCALE = 0.001  # g per LSB
_DT = ModbusClientMixin.DATATYPE


def _regs(value: float | int, dtype: ModbusClientMixin.DATATYPE) -> list[int]:
    return ModbusClientMixin.convert_to_registers(value, dtype)


@dataclass
class _Unit:
    unit_id: int
    machine: Machine


class MachineModbusServer:
    """A Modbus TCP server on ``host:port`` exposing ``machines`` as unit ids 1..n.

    ``start()`` returns once the port accepts connections; ``stop()`` closes it. The machines
    advance with ``clock`` at ``speedup`` x real time, sample-exactly, every ``tick_s``.
    """

    def __init__(
        self,
        machines: list[Machine],
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        tick_s: float = 0.05,
        speedup: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.host, self.port, self.tick_s, self.speedup = host, port, tick_s, speedup
        self.clock = clock or SystemClock()
        self.units = [_Unit(i + 1, m) for i, m in enumerate(machines)]
        devices = [
            SimDevice(
                id=u.unit_id,
                simdata=[SimData(0, count=RING_ADDR + RING_LENGTH, datatype=DataType.REGISTERS)],
            )
            for u in self.units
        ]
        self._server: ModbusTcpServer | None = None
        self._devices = devices
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    async def start(self) -> None:
        server = ModbusTcpServer(self._devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise ResourceUnavailableError(
                f"cannot listen on {self.host}:{self.port}: address in use or not available"
            ) from exc
        self._server = server
        for u in self.units:
            await self._publish(u, np.zeros(0, dtype=np.float32))
        self._t0 = self.clock.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"sim-modbus-{self.port}")
        log.info("simulator serving %d machine(s) on %s:%d", len(self.units), self.host, self.port)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def step(self) -> None:
        """Bring every machine up to the current clock time and publish the new samples."""
        elapsed = (self.clock.monotonic() - self._t0) * self.speedup
        for u in self.units:
            due = math.floor(elapsed * u.machine.spec.sample_rate_hz) - u.machine.samples_out
            if due > 0:
                await self._publish(u, u.machine.vibration(due))

    async def _run(self) -> None:
        while True:
            await self.step()
            await self.clock.sleep(self.tick_s)

    async def _publish(self, u: _Unit, samples: npt.NDArray[np.float32]) -> None:
        assert self._server is not None
        m = u.machine
        first = m.samples_out - samples.shape[0]
        if samples.shape[0] > RING_LENGTH:
            samples, first = samples[-RING_LENGTH:], m.samples_out - RING_LENGTH
        raw = np.clip(np.round(samples / VIB_SCALE), -32768, 32767).astype(np.int16).view(np.uint16)
        pos = first % RING_LENGTH
        head = min(raw.shape[0], RING_LENGTH - pos)
        if head:
            await self._server.async_setValues(u.unit_id, 16, RING_ADDR + pos, raw[:head].tolist())
        if raw.shape[0] > head:
            await self._server.async_setValues(u.unit_id, 16, RING_ADDR, raw[head:].tolist())
        status = (
            _regs(m.samples_out % (1 << 32), _DT.UINT32)
            + _regs(m.temperature_c, _DT.FLOAT32)
            + _regs(m.spec.shaft_hz, _DT.FLOAT32)
            + [round(m.severity() * 1000)]
        )
        await self._server.async_setValues(u.unit_id, 16, COUNTER_ADDR, status)
