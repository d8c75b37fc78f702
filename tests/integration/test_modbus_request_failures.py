"""Failures of single requests against a tiny Modbus TCP server (raw asyncio on 127.0.0.1) that
can leave one address unanswered, answer it short, with the wrong function code, an exception or
busy, while answering the others.

A request without a valid answer marks its tags Bad for that period (or skips that waveform
poll) and keeps the connection; only ``failed_requests_before_reconnect`` failures in a row drop
it. Staleness counts every delivered reading, Good or Bad.

Virtual time (``FakeClock``) moves only while the collector is idle (``drive``), so each test
sees a fixed sequence of periods; only the server's silence costs real time (``timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.runtime.queues import BoundedQueue

VALUE = 42
RING_ADDRESS, RING_LENGTH, SEQ_ADDRESS, RING_FS = 100, 64, 0, 16.0


class TinyServer:
    """Answers reads with ``VALUE`` in every register, each address shaped by
    ``modes[address]`` (else ``default``): ``good``, ``silent`` (never answers), ``short`` (one
    register short), ``wrong_function``, ``exception`` (illegal address), ``busy``, ``close``
    (closes the connection).

    With ``ring=True`` it serves a waveform ring instead: ``RING_FS`` samples per second of
    ``clock`` time, sample ``k`` (value ``k``) at ``RING_ADDRESS + k % RING_LENGTH``, the count
    at ``SEQ_ADDRESS``; ``silent_ring_reads`` reads of the ring go unanswered."""

    def __init__(self, clock: FakeClock, *, ring: bool = False) -> None:
        self.clock, self.ring = clock, ring
        self.modes: dict[int, str] = {}
        self.default = "good"
        self.silent_ring_reads = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    def _registers(self, address: int, count: int) -> list[int] | None:
        if not self.ring:
            return [VALUE] * count
        written = int(self.clock.monotonic() * RING_FS)
        if address == SEQ_ADDRESS:
            return [written >> 16, written & 0xFFFF][:count]
        if self.silent_ring_reads:
            self.silent_ring_reads -= 1
            return None
        out = []
        for p in range(address - RING_ADDRESS, address - RING_ADDRESS + count):
            k = written - 1 - (written - 1 - p) % RING_LENGTH  # latest sample at position p
            out.append(max(k, 0) & 0xFFFF)
        return out

    def _answer(self, fc: int, address: int, count: int) -> bytes | None:
        mode = self.modes.get(address, self.default)
        if mode == "silent":
            return None
        if mode in ("exception", "busy"):
            return bytes([fc | 0x80, 2 if mode == "exception" else 6])
        regs = self._registers(address, count)
        if regs is None:
            return None
        if mode == "short":
            regs = regs[:-1]
        data = struct.pack(f">{len(regs)}H", *regs)
        return bytes([fc ^ 1 if mode == "wrong_function" else fc, len(data)]) + data

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self._writers.append(w)
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await r.readexactly(7))
                pdu = await r.readexactly(length - 1)
                fc, address, count = struct.unpack(">BHH", pdu[:5])
                if self.modes.get(address, self.default) == "close":
                    break
                answer = self._answer(fc, address, count)
                if answer is not None:
                    w.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                    await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def drive(
    clock: FakeClock, stop: Callable[[], bool], *, sleepers: int = 2, step: float = 0.25
) -> None:
    """Advance ``clock`` by ``step`` whenever ``sleepers`` tasks sleep on it (the collector is
    idle: no request in flight), until ``stop()`` holds at such a moment."""
    async with asyncio.timeout(30):  # hang guard only
        while True:
            await clock.wait_for_sleepers(sleepers)
            if stop():
                return
            clock.advance(step)
            await asyncio.sleep(0)


def device(port: int, tags: list[dict[str, object]], **kw: object) -> ModbusDevice:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 0.2,
        "reconnect": {"initial_s": 0.5, "max_s": 5.0, "jitter": 0.0},
        "poll_groups": {"default": {"period_s": 1.0}},
        "stale_after_periods": 2,
        "busy_retries": 0,
        "tags": tags,
    }
    return ModbusDevice.model_validate({**base, **kw})


async def collector(
    server: TinyServer,
    tags: list[dict[str, object]],
    channels: dict[str, Channel] | None = None,
    **kw: object,
) -> tuple[ModbusCollector, BoundedQueue[SampleBlock | Reading]]:
    """Start ``server``; a collector of ``device(port, tags, **kw)`` on its clock (``channels``:
    ``CHANNELS`` by default) and its queue."""
    port = await server.start()
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 10_000)
    cfg = device(port, tags, **kw)
    return ModbusCollector("d", cfg, CHANNELS if channels is None else channels, q, server.clock), q


async def drain(q: BoundedQueue[SampleBlock | Reading]) -> list[Reading]:
    """The readings queued so far (taking queued items never suspends)."""
    out = []
    while len(q):
        item = await q.get()
        assert isinstance(item, Reading)
        out.append(item)
    return out


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@contextlib.asynccontextmanager
async def running(col: ModbusCollector) -> AsyncIterator[None]:
    task = asyncio.create_task(col.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    s = TinyServer(FakeClock())
    yield s
    await s.stop()


TWO_TAGS: list[dict[str, object]] = [
    {"channel": "a", "address": 0},
    {"channel": "b", "address": 200},
]
CHANNELS = {"a": Channel(kind="temperature"), "b": Channel(kind="temperature")}


@pytest.mark.parametrize("mode", ["silent", "short", "wrong_function"])
async def test_a_request_without_valid_answer_marks_its_tags_bad_and_keeps_the_connection(
    server: TinyServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = server.clock
    server.modes[200] = mode
    col, q = await collector(server, TWO_TAGS)
    async with running(col):
        await drive(clock, lambda: len(q) >= 12)  # six periods, more than 3 failed requests
        first = await drain(q)
        assert col.state == "connected"
        server.modes[200] = "good"
        await drive(clock, lambda: len(q) >= 4)
        then = await drain(q)
    assert [(r.channel, r.quality, r.value) for r in first[::2]] == [("a", Quality.GOOD, VALUE)] * 6
    assert all(r.channel == "b" and r.quality == Quality.BAD for r in first[1::2])
    assert all(math.isnan(r.value) for r in first[1::2])
    assert [(r.channel, r.quality) for r in then] == [("a", Quality.GOOD), ("b", Quality.GOOD)] * 2
    c = col.counters
    assert (c.connects, c.disconnects, c.transient_errors, c.failed_requests) == (1, 0, 0, 6)
    assert len(messages(caplog, "tags b are marked bad until it answers")) == 1
    assert len(messages(caplog, "read at 200 works again")) == 1
    assert messages(caplog, "unreachable") == messages(caplog, "recovered") == []
    assert messages(caplog, "stale") == []


async def test_a_device_answering_nothing_becomes_unreachable_after_n_failed_requests(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = server.clock
    server.default = "silent"
    col, q = await collector(
        server,
        TWO_TAGS[:1],
        failed_requests_before_reconnect=3,
        breaker_threshold=2,
        breaker_cooldown_s=30.0,
    )
    async with running(col):
        await drive(clock, lambda: col.state == "unreachable")
        assert (col.counters.failed_requests, col.counters.connects) == (3, 1)
        await drive(clock, lambda: col.breaker == "open")
    readings = await drain(q)
    assert [(r.channel, r.quality) for r in readings] == [("a", Quality.BAD)] * 6
    c = col.counters
    assert (c.connects, c.failed_requests, c.transient_errors, c.breaker_opens) == (2, 6, 2, 1)
    # reconnect sleeps (poll periods and stale checks are 1 s): backoff, then the cooldown
    assert [s for s in clock.sleeps if s != 1.0] == [0.5, 30.0]
    assert len(messages(caplog, "unreachable")) == 1
    assert len(messages(caplog, "marked bad until it answers")) == 1


@pytest.mark.parametrize("mode", ["silent", "close"])
async def test_readings_of_a_period_are_delivered_when_the_connection_is_dropped(
    server: TinyServer, mode: str
) -> None:
    """After ``a`` answered: three failed requests in a row (``silent``), or a lost connection
    (``close``), drop the connection; the period's readings are delivered all the same."""
    clock = server.clock
    tags: list[dict[str, object]] = [
        {"channel": ch, "address": address}
        for ch, address in (("a", 0), ("b", 100), ("c", 200), ("d", 300))
    ]
    server.modes = {100: mode, 200: mode, 300: mode}
    col, q = await collector(server, tags, {ch: Channel(kind="temperature") for ch in "abcd"})
    async with running(col):
        await drive(clock, lambda: col.state == "unreachable")
    got = [(r.channel, r.quality) for r in await drain(q)]
    c = col.counters
    assert (c.connects, c.disconnects, c.transient_errors) == (1, 1, 1)
    if mode == "silent":
        assert got == [("a", Quality.GOOD)] + [(ch, Quality.BAD) for ch in "bcd"]
        assert c.failed_requests == 3
    else:
        assert got == [("a", Quality.GOOD)]
        assert c.failed_requests == 0


async def test_a_failed_ring_read_skips_one_poll_and_loses_no_samples(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = FakeClock()
    server = TinyServer(clock, ring=True)
    ring = {
        "channel": "v",
        "function": 3,
        "ring_address": RING_ADDRESS,
        "ring_length": RING_LENGTH,
        "sequence_address": SEQ_ADDRESS,
        "period_s": 1.0,
    }
    channels = {"v": Channel(kind="vibration", sample_rate_hz=RING_FS)}
    col, q = await collector(server, [], channels, waveforms=[ring])
    try:
        async with running(col):
            await drive(clock, lambda: len(q) >= 2, sleepers=1)
            server.silent_ring_reads = 1
            await drive(clock, lambda: len(q) >= 5, sleepers=1)
    finally:
        await server.stop()
    blocks = [await q.get() for _ in range(len(q))]
    assert all(isinstance(b, SampleBlock) for b in blocks)
    sizes = [len(b.samples) for b in blocks if isinstance(b, SampleBlock)]
    assert sizes == [16, 16, 32, 16, 16]  # the skipped poll's samples come with the next one
    seq = 0
    for b in blocks:
        assert isinstance(b, SampleBlock)
        assert b.sequence == seq
        np.testing.assert_array_equal(b.samples, np.arange(seq, seq + len(b.samples)))
        seq += len(b.samples)
    c = col.counters
    assert (c.connects, c.failed_requests, c.samples_lost, c.transient_errors) == (1, 1, 0, 0)
    assert len(messages(caplog, "waveform v polls skipped until it answers")) == 1
    assert len(messages(caplog, "waveform v readable again")) == 1


async def test_bad_readings_keep_a_tag_fresh_and_a_stale_resend_repeats_the_last_reading(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = server.clock
    col, q = await collector(server, TWO_TAGS[:1])
    async with running(col):
        await drive(clock, lambda: len(q) >= 2)
        server.modes[0] = "exception"
        await drive(clock, lambda: len(q) >= 8)  # six periods of Bad: three stale limits
        assert col.stale == set()
        server.modes[0] = "busy"  # no readings at all from now on
        await drive(clock, lambda: bool(col.stale))
        resent = (await drain(q))[-1]
        server.modes[0] = "good"
        await drive(clock, lambda: not col.stale)
    assert [r.quality for r in await drain(q)] == [Quality.GOOD]
    assert resent.quality == Quality.BAD  # not the old Good 42 as Uncertain
    assert math.isnan(resent.value)
    assert col.counters.stale_events == 1
    assert len(messages(caplog, "stale")) == 1
    assert len(messages(caplog, "fresh again")) == 1


async def test_each_tag_going_stale_is_logged(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = server.clock
    col, q = await collector(server, TWO_TAGS)
    async with running(col):
        await drive(clock, lambda: len(q) >= 2)
        server.modes[0] = "busy"
        await drive(clock, lambda: col.stale == {"a"})
        server.modes[200] = "busy"
        await drive(clock, lambda: col.stale == {"a", "b"})
        server.modes.clear()
        await drive(clock, lambda: not col.stale)
    stale = messages(caplog, "stale (not refreshed in time)")
    assert len(stale) == 2
    assert "tag(s) a stale" in stale[0]
    assert "tag(s) b stale" in stale[1]
    assert len(messages(caplog, "fresh again")) == 1
    resent = [(r.channel, r.value) for r in await drain(q) if r.quality == Quality.UNCERTAIN]
    assert resent == [("a", VALUE), ("b", VALUE)]  # each once, with its last Good value
