"""Malformed Modbus/TCP responses from a deliberately broken server (raw asyncio, no pymodbus on
the server side): truncated frames, wrong byte counts, wrong function codes, wrong transaction
ids, NaN and infinity in float registers. The collector never crashes: each error is counted,
non-finite values arrive marked Bad, and good readings resume as soon as the server answers
properly again."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator

import pytest

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.core.clock import SystemClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.runtime.queues import BoundedQueue
from tests.integration.test_modbus_robustness import CHANNELS, device, next_reading

GOOD_VALUE = 41.5


class BrokenServer:
    """Answers function 4 reads with a float32 (ABCD) per two registers, shaped by ``mode``."""

    def __init__(self) -> None:
        self.mode = "good"
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def _answer(self, tid: int, unit: int, fc: int, count: int) -> bytes:
        value = {"nan": math.nan, "inf": math.inf}.get(self.mode, GOOD_VALUE)
        data = struct.pack(">f", value) * (count // 2) + b"\0\0" * (count % 2)
        pdu = bytes([fc, len(data)]) + data
        if self.mode == "wrong_byte_count":
            pdu = bytes([fc, len(data) + 6]) + data
        elif self.mode == "wrong_function":
            pdu = bytes([fc ^ 0x01]) + pdu[1:]
        elif self.mode == "short_data":
            pdu = bytes([fc, len(data)]) + data[: len(data) // 2]
        mbap_tid = tid ^ 0x5555 if self.mode == "wrong_tid" else tid
        frame = struct.pack(">HHHB", mbap_tid, 0, len(pdu) + 1, unit) + pdu
        if self.mode == "truncated":
            frame = frame[: len(frame) // 2]
        return frame

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await r.readexactly(length - 1)
                self.requests += 1
                fc, _, count = struct.unpack(">BHH", pdu[:5])
                w.write(self._answer(tid, unit, fc, count))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


def errors(col: ModbusCollector) -> int:
    c = col.counters
    return (
        c.transient_errors
        + c.permanent_errors
        + c.failed_requests
        + c.disconnects
        + c.failed_connects
    )


@pytest.fixture
async def broken(port: int) -> AsyncIterator[BrokenServer]:
    s = BrokenServer()
    await s.start(port)
    yield s
    await s.stop()


@pytest.mark.parametrize(
    "mode",
    ["truncated", "wrong_byte_count", "wrong_function", "short_data", "wrong_tid"],
)
async def test_malformed_frames_are_counted_and_polling_recovers(
    broken: BrokenServer, port: int, mode: str
) -> None:
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    dev = device(port, breaker_cooldown_s=0.2)
    col = ModbusCollector("d", dev, CHANNELS, q, SystemClock())
    task = asyncio.create_task(col.run())
    try:
        assert (await next_reading(q, Quality.GOOD)).value == GOOD_VALUE
        before = errors(col)
        broken.mode = mode
        async with asyncio.timeout(30):  # hang guard: errors come from the server's answers
            while errors(col) == before:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(q.get(), 0.1)  # polls (or their failures) go on
        broken.mode = "good"
        r = await next_reading(q, Quality.GOOD)
        assert r.value == GOOD_VALUE
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("mode", ["nan", "inf"])
async def test_non_finite_values_arrive_marked_bad_then_good_again(
    broken: BrokenServer, port: int, mode: str
) -> None:
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    col = ModbusCollector("d", device(port), CHANNELS, q, SystemClock())
    task = asyncio.create_task(col.run())
    try:
        await next_reading(q, Quality.GOOD)
        broken.mode = mode
        bad = await next_reading(q, Quality.BAD)
        assert not math.isfinite(bad.value)
        broken.mode = "good"
        assert (await next_reading(q, Quality.GOOD)).value == GOOD_VALUE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
