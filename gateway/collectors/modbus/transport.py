"""Thin async wrapper over pymodbus clients: connect, read, classify errors.

Exceptions from the client become ``TransientError`` (connection lost: reconnect and retry),
``RequestFailedError`` (no answer to one request, or a malformed one, on a connection that is
still up: the caller decides when that is worth a reconnect) or ``PermanentError`` (an exception
response such as illegal address: the request itself is wrong and retrying cannot help).

RTU devices on the same serial port share one ``SerialBus``: one client (serial ports are opened
exclusively), one lock, so one transaction at a time runs per bus, each followed by the
3.5-character silent interval. The bus is opened by its first user and closed by its last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ConnectionException, ModbusException

from gateway.collectors.modbus.config import ModbusDevice
from gateway.collectors.modbus.slots import Slots
from gateway.core.errors import (
    DeviceBusyError,
    PermanentError,
    RequestFailedError,
    TransientError,
)


class SerialBus:
    """One serial line shared by the devices on it (per event loop)."""

    def __init__(self, cfg: ModbusDevice) -> None:
        assert cfg.serial_port is not None
        self.port = cfg.serial_port
        self.client = AsyncModbusSerialClient(
            cfg.serial_port,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            timeout=cfg.timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        # the collector decides when unanswered requests are worth a reconnect
        self.client.set_max_no_responses(cfg.failed_requests_before_reconnect)
        self.lock = asyncio.Lock()
        self.users = 0
        self.gap_s = inter_frame_delay_s(cfg.baudrate)


BUSY_CODES = (5, 6)  # ACKNOWLEDGE (still processing), DEVICE_BUSY
_BUSES: dict[tuple[int, str], SerialBus] = {}


def _bus_for(cfg: ModbusDevice) -> SerialBus:
    assert cfg.serial_port is not None
    key = (id(asyncio.get_running_loop()), cfg.serial_port)
    bus = _BUSES.get(key)
    if bus is None:
        bus = _BUSES[key] = SerialBus(cfg)
    return bus


def _release_bus(bus: SerialBus) -> None:
    bus.users -= 1
    if bus.users <= 0:
        bus.client.close()
        for key, b in list(_BUSES.items()):
            if b is bus:
                del _BUSES[key]


def inter_frame_delay_s(baudrate: int) -> float:
    """Modbus RTU silent interval: 3.5 characters of 11 bits, at least 1.75 ms above 19200 baud."""
    return 1.75e-3 if baudrate > 19200 else 3.5 * 11.0 / baudrate


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation the client swallowed.

    On Python 3.11, ``asyncio.wait_for`` (which pymodbus awaits each response with) returns the
    result instead of raising when a cancellation arrives just as the response does. The task
    then still has a pending cancel request (``cancelling() > 0``) but would keep polling
    forever, and shutdown would hang. Checking after each request restores the cancel.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ModbusTransport:
    """One connection to one device. Not shared between tasks except through ``read``."""

    def __init__(self, cfg: ModbusDevice) -> None:
        self.cfg = cfg
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._in_flight = Slots(cfg.max_in_flight)
        self._bus: SerialBus | None = None

    async def connect(self) -> None:
        """Open the connection or raise ``TransientError``."""
        await self.close()
        cfg = self.cfg
        if cfg.transport == "rtu":
            bus = _bus_for(cfg)
            bus.users += 1
            self._bus = bus
            if not bus.client.connected:
                async with bus.lock:
                    if not bus.client.connected:
                        await self._open(bus.client)
            self._client = bus.client
            return
        assert cfg.host is not None
        client = AsyncModbusTcpClient(
            cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0
        )
        # pymodbus closes the connection after this many unanswered requests (plus one); the
        # collector's own limit, counting malformed answers too, is reached first
        client.set_max_no_responses(cfg.failed_requests_before_reconnect)
        try:
            await self._open(client)
        except BaseException:  # including cancellation: never leak the socket
            client.close()
            raise
        self._client = client

    @staticmethod
    async def _open(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
        try:
            ok = await client.connect()
        except (ModbusException, OSError) as exc:
            client.close()
            raise TransientError(f"connect failed: {exc}") from exc
        _raise_if_cancelling()
        if not ok:
            client.close()
            raise TransientError("connection refused or timed out")

    async def close(self) -> None:
        if self._bus is not None:
            _release_bus(self._bus)
            self._bus = None
            self._client = None
        elif self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, function: int, address: int, count: int) -> Sequence[int] | Sequence[bool]:
        """Read ``count`` registers (function 3, 4) or bits (function 1, 2) from ``address``.

        Raises ``TransientError`` if the connection is gone, ``RequestFailedError`` if this
        request got no answer or a malformed one while the connection stays up,
        ``DeviceBusyError`` or ``PermanentError`` for an exception response.

        The hot path of every collector: one call level over the client's request, a slot
        taken without awaiting when one is free, no per-request allocation of our own."""
        client = self._client
        if client is None or not client.connected:
            raise TransientError("not connected")
        slots = self._in_flight
        if not slots.take():
            await slots.wait()
        try:
            request = _REQUESTS[function]
            if self._bus is not None:
                async with self._bus.lock:
                    rr = await request(client, address, count=count, device_id=self.cfg.unit_id)
                    await asyncio.sleep(self._bus.gap_s)
            else:
                rr = await request(client, address, count=count, device_id=self.cfg.unit_id)
        except (ModbusException, TimeoutError) as exc:
            what = f"function {function} at {address}: {str(exc) or repr(exc)}"
            if isinstance(exc, ConnectionException) or not client.connected:
                raise TransientError(what) from exc
            raise RequestFailedError(what) from exc  # no (valid) answer to this request
        except OSError as exc:
            raise TransientError(f"function {function} at {address}: {exc!r}") from exc
        finally:
            slots.release()
        _raise_if_cancelling()
        if rr.isError():
            if getattr(rr, "exception_code", None) in BUSY_CODES:
                raise DeviceBusyError(f"function {function} at {address}: device busy")
            raise PermanentError(f"function {function} at {address} x{count}: device answered {rr}")
        if getattr(rr, "function_code", function) != function:
            raise RequestFailedError(
                f"function {function} at {address}: answer has function code {rr.function_code}"
            )
        values: Sequence[int] | Sequence[bool] = (
            rr.bits[:count] if function in (1, 2) else rr.registers
        )
        if len(values) != count:
            raise RequestFailedError(
                f"function {function} at {address}: {len(values)} value(s) in the answer, "
                f"asked for {count}"
            )
        return values


#: the client method for each read function code (3 and 4 registers, 1 and 2 bits)
_REQUESTS: dict[int, Callable[..., Awaitable[Any]]] = {
    1: ModbusClientMixin.read_coils,
    2: ModbusClientMixin.read_discrete_inputs,
    3: ModbusClientMixin.read_holding_registers,
    4: ModbusClientMixin.read_input_registers,
}
