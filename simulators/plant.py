"""A simulated plant: machines advanced together on one clock, their snapshots published to
every protocol server that serves them (Modbus, OPC UA).

``Plant.step()`` advances every machine to the current real time and hands each snapshot to
each publisher; ``run()`` does that every ``tick_s``. Publishers own their protocol servers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from gateway.core.clock import Clock, SystemClock
from simulators.machine import Machine, MachineSnapshot


class Publisher(Protocol):
    """A protocol server that serves machine data. ``publish`` must not block for long."""

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        """Make ``snap`` (machine number ``index``, 0-based) visible to clients."""
        ...


class Plant:
    def __init__(
        self, machines: list[Machine], clock: Clock | None = None, tick_s: float = 0.05
    ) -> None:
        self.machines, self.tick_s = machines, tick_s
        self.clock = clock or SystemClock()
        self.publishers: list[Publisher] = []
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.last: list[MachineSnapshot | None] = [None] * len(machines)

    def elapsed_s(self) -> float:
        if self._t0 is None:
            self._t0 = self.clock.monotonic()
        return self.clock.monotonic() - self._t0

    async def step(self) -> None:
        """Advance every machine to now and publish."""
        t = self.elapsed_s()
        for i, m in enumerate(self.machines):
            snap = m.advance(t)
            self.last[i] = snap
            for p in self.publishers:
                await p.publish(i, m, snap)

    async def run(self) -> None:
        while True:
            await self.step()
            await self.clock.sleep(self.tick_s)

    def start(self) -> None:
        self.elapsed_s()
        self._task = asyncio.create_task(self.run(), name="plant")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
