"""A Modbus TCP server for the collection benchmark: units 1..16, each with channel 0's header
and ring of the simulator's map, frozen (the sample counter does not move), so every sweep of a
client makes the same requests and gets whole blocks. No physics runs beside it.

Run: ``python -m tests.benchmarks.modbus_ring_server PORT``; prints ``listening`` when ready.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators import modbus_map as M

UNITS = 16
#: samples written so far: the newest ring's worth starts mid-ring, so a sweep wraps
COUNTER = 5 * M.RING_LENGTH + 3000


def registers() -> list[int]:
    values = [0] * M.register_count(1)
    b = M.CHANNEL_HEADER_BASE
    values[b : b + 2] = M.encode(COUNTER, "uint32", "ABCD")
    ring = np.random.default_rng(1).integers(0, 1 << 16, M.RING_LENGTH)
    values[M.ring_address(0) : M.ring_address(1)] = ring.tolist()
    return values


async def serve(port: int) -> None:
    values = registers()
    devices = [
        SimDevice(id=unit, simdata=[SimData(0, count=len(values), datatype=DataType.REGISTERS)])
        for unit in range(1, UNITS + 1)
    ]
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    for unit in range(1, UNITS + 1):  # the register list served, written in place
        server.context.devices[unit].block["x"][2][:] = values  # type: ignore[union-attr]
    print("listening", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
