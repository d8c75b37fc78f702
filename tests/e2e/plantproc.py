"""The end-to-end plant (``tests.e2e.plant``) simulated and served in its own process, so the
simulation and the protocol servers run on another core than the gateway under test.

    python -m tests.e2e.plantproc MODBUS_PORT OPCUA_PORT

Prints ``ready OPCUA_ENDPOINT`` once both servers listen; then obeys commands on stdin, one a
line, each answered with one line: ``start`` (the plant starts; ``started T0_NS``, the wall time
that is sample 0 of the OPC UA waveforms and the origin of every machine's time), ``inject
FAULT`` / ``clear FAULT`` (a Modbus server fault; ``ok``), ``restart_opcua`` (``restarted``
once the OPC UA server serves again) and ``stop`` (``stopped``, then the process exits).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from simulators.modbus_server import MachineModbusServer
from simulators.opcua_server import MachineOpcUaServer
from simulators.plant import Plant
from tests.e2e.plant import NS, OPCUA_PLANT, PLANT, Served, machines

REPO = Path(__file__).resolve().parents[2]


class PlantProcess:
    """The test's side: starts the process and sends it commands (hang guards of 60 s)."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoint: str) -> None:
        self.proc, self.endpoint = proc, endpoint

    @classmethod
    async def start(cls, modbus_port: int, opcua_port: int, log: Path) -> PlantProcess:
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.e2e.plantproc",
                str(modbus_port),
                str(opcua_port),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        plant = cls(proc, "")
        try:
            word, plant.endpoint = (await plant._line()).split()
            assert word == "ready", word
        except BaseException:
            await plant.kill()
            raise
        return plant

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode().strip()
        if not line:
            raise AssertionError(f"the plant process exited ({self.proc.returncode})")
        return line

    async def command(self, cmd: str) -> str:
        """Send ``cmd``; returns the answer line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{cmd}\n".encode())
        await self.proc.stdin.drain()
        return await self._line()

    async def stop(self) -> None:
        try:
            assert await self.command("stop") == "stopped"
            async with asyncio.timeout(30):
                assert await self.proc.wait() == 0
        finally:
            await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(modbus_port: int, opcua_port: int) -> None:
    _, sims = machines()
    n_mb = len(PLANT)
    server = MachineModbusServer(sims[:n_mb], port=modbus_port)
    await server.start()
    ua_sim = MachineOpcUaServer(sims[n_mb:], port=opcua_port, namespace_uri=NS)
    await ua_sim.start()
    plant = Plant(sims)
    plant.publishers += [Served(server, 0, n_mb), Served(ua_sim, n_mb, len(OPCUA_PLANT))]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    say(f"ready {ua_sim.endpoint}")
    try:
        while line := (await stdin.readline()).decode().split():
            match line:
                case ["start"]:
                    t0_ns = time.time_ns()
                    ua_sim.origin = datetime.fromtimestamp(t0_ns / 1e9, UTC)
                    plant.start()
                    say(f"started {t0_ns}")
                case ["inject", fault]:
                    server.inject(fault)
                    say("ok")
                case ["clear", fault]:
                    server.clear(fault)
                    say("ok")
                case ["restart_opcua"]:
                    await ua_sim.restart()
                    say("restarted")
                case ["stop"]:
                    break
                case _:
                    say(f"unknown command {line}")
    finally:
        await plant.stop()
        await server.stop()
        await ua_sim.stop()
    say("stopped")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
