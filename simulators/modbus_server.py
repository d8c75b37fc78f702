"""Serve simulated machines over a real Modbus server (pymodbus): one unit id per machine,
the register map of ``simulators.modbus_map``, and fault injection.

Faults (``inject(kind, ...)`` / ``clear(kind)``), observable by any client:
- ``drop_connections``: close every client connection now (clients must reconnect);
- ``no_response``: requests are received but not answered until cleared (client timeouts);
- ``exception``: every request gets an exception response, ``code="busy"`` (06) or
  ``"illegal_address"`` (02); with ``count=N`` only the next N requests, then it clears itself;
- ``latency``: each response is delayed by ``latency_s`` plus up to ``jitter_s`` at random;
- ``corrupt_frames``: one byte of each response is flipped (the CRC on RTU, the transaction
  id on TCP, which has no checksum).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.core.errors import ResourceUnavailableError
from simulators import modbus_map as M
from simulators.machine import Machine, MachineSnapshot

log = logging.getLogger(__name__)

FAULT_KINDS = ("drop_connections", "no_response", "exception", "latency", "corrupt_frames")
_EXC = {"busy": ExcCodes.DEVICE_BUSY, "illegal_address": ExcCodes.ILLEGAL_ADDRESS}


class MachineModbusServer:
    """A Modbus TCP server (or RTU on ``serial_port``) exposing ``machines`` as units 1..n.

    ``start()`` returns once clients can connect; ``publish`` (the ``Plant`` calls it) writes a
    machine's newest snapshot into its registers: ring samples first, then the counters, so a
    client that read counter ``c`` finds samples ``c - R .. c - 1`` in the ring.
    """

    def __init__(
        self,
        machines: list[Machine],
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        serial_port: str | None = None,
        baudrate: int = 19200,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.host, self.port, self.serial_port, self.baudrate = host, port, serial_port, baudrate
        self.machines = machines
        self.rand = rand
        for m in machines:
            if len(m.channels) > M.MAX_CHANNELS:
                raise ValueError(f"at most {M.MAX_CHANNELS} waveform channels per machine")
        self._devices = [self._device(i + 1, m) for i, m in enumerate(machines)]
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._regs: list[list[int]] = []
        self.faults: dict[str, dict[str, Any]] = {}
        self._answering = asyncio.Event()
        self._answering.set()
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"

    def _device(self, unit: int, m: Machine) -> SimDevice:
        return SimDevice(
            id=unit,
            simdata=[
                SimData(0, count=M.register_count(len(m.channels)), datatype=DataType.REGISTERS)
            ],
            action=functools.partial(self._action, unit),
        )

    async def start(self) -> None:
        """Listen, or raise ``ResourceUnavailableError``."""
        ident = ModbusDeviceIdentification(  # type: ignore[no-untyped-call]
            info_name={
                "VendorName": "pdm-gateway simulators",
                "ProductCode": "PDM-SIM",
                "MajorMinorRevision": "1.0",
                "ProductName": "simulated rotating machine",
            }
        )
        server: ModbusTcpServer | ModbusSerialServer
        if self.serial_port:
            server = ModbusSerialServer(
                self._devices,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                trace_packet=self._trace_packet,
                identity=ident,
            )
        else:
            server = ModbusTcpServer(
                self._devices,
                address=(self.host, self.port),
                trace_packet=self._trace_packet,
                identity=ident,
            )
        try:
            await server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise ResourceUnavailableError(
                f"cannot listen on {self.endpoint}: address in use or not available"
            ) from exc
        self._server = server
        # the register lists pymodbus serves from; publish() writes them in place
        self._regs = [
            server.context.devices[i + 1].block["x"][2]  # type: ignore[union-attr]
            for i in range(len(self.machines))
        ]
        for i, m in enumerate(self.machines):
            self._write_static(i, m)
        log.info("Modbus simulator: %d machine(s) on %s", len(self.machines), self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            self._answering.set()
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    # -- data ------------------------------------------------------------------------------
    def _write_static(self, i: int, m: Machine) -> None:
        regs = self._regs[i]
        regs[14:16] = [len(m.channels), M.RING_LENGTH]
        for c, (_, kind, _, fs) in enumerate(m.channels):
            b = M.CHANNEL_HEADER_BASE + M.CHANNEL_HEADER_SIZE * c
            regs[b + 2 : b + 7] = (
                M.encode(M.SCALES[kind], "float32", "ABCD")
                + M.encode(fs, "float32", "ABCD")
                + [M.KIND_CODES[kind]]
            )

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        if self._server is None:
            return
        regs = self._regs[index]
        rms = 0.0
        counters: list[tuple[int, int]] = []
        for c, blk in enumerate(snap.blocks):
            n = blk.samples.shape[0]
            end = blk.first_index + n
            counters.append((c, end))
            if n == 0:
                continue
            if blk.channel == "vib0":
                rms = float(np.sqrt(np.mean(np.square(blk.samples, dtype=np.float64))))
            raw = M.to_ring(blk.samples[-M.RING_LENGTH :], M.SCALES[blk.kind])
            first = end - raw.shape[0]
            base = M.ring_address(c)
            pos = first % M.RING_LENGTH
            head = min(raw.shape[0], M.RING_LENGTH - pos)
            regs[base + pos : base + pos + head] = raw[:head].tolist()
            if raw.shape[0] > head:
                regs[base : base + raw.shape[0] - head] = raw[head:].tolist()
        temp = snap.temperature_c
        t10 = 0 if not np.isfinite(temp) else round(temp * 10)
        uptime = int(snap.t_real_s)
        regs[0:14] = (
            M.encode(rms, "float32", "ABCD")
            + M.encode(temp, "float32", "ABCD")
            + M.encode(snap.shaft_hz, "float32", "ABCD")
            + M.encode(temp, "float32", "CDAB")
            + M.encode(t10 & 0xFFFF, "uint16", "AB")
            + M.encode(t10 & 0xFFFF, "uint16", "BA")
            + M.encode(uptime, "uint32", "ABCD")
            + M.encode(uptime, "uint32", "DCBA")
        )
        for c, end in counters:
            b = M.CHANNEL_HEADER_BASE + M.CHANNEL_HEADER_SIZE * c
            regs[b : b + 2] = M.encode(end % (1 << 32), "uint32", "ABCD")

    # -- faults ----------------------------------------------------------------------------
    def inject(self, kind: str, **params: Any) -> None:
        """Start fault ``kind`` (see the module docstring) until ``clear(kind)``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        log.info("Modbus simulator %s: inject %s %s", self.endpoint, kind, params or "")
        if kind == "drop_connections":
            if self._server is not None:
                for conn in list(self._server.active_connections.values()):
                    conn.close()
            return
        if kind == "exception" and params.get("code", "busy") not in _EXC:
            raise ValueError("exception code must be 'busy' or 'illegal_address'")
        self.faults[kind] = params
        if kind == "no_response":
            self._answering.clear()

    def clear(self, kind: str) -> None:
        if self.faults.pop(kind, None) is not None:
            log.info("Modbus simulator %s: clear %s", self.endpoint, kind)
        if kind == "no_response":
            self._answering.set()

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        self.requests += 1
        if "no_response" in self.faults:
            await self._answering.wait()
        lat = self.faults.get("latency")
        if lat is not None:
            await asyncio.sleep(
                float(lat.get("latency_s", 0.1)) + float(lat.get("jitter_s", 0.0)) * self.rand()
            )
        exc = self.faults.get("exception")
        if exc is not None:
            code = _EXC[exc.get("code", "busy")]
            if "count" in exc:  # a limited number of exception responses, then normal again
                exc["count"] -= 1
                if exc["count"] <= 0:
                    self.clear("exception")
            return code
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and "corrupt_frames" in self.faults and len(data) > 2:
            # RTU: break the CRC (last byte); TCP has no checksum: break the MBAP transaction id
            i = len(data) - 1 if self.serial_port else 0
            return data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]
        return data
