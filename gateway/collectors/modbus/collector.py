"""The Modbus collector: one supervised task per device.

It connects, then runs one poll loop per poll group and one per waveform ring until the
connection fails; then it closes, waits with backoff and jitter, and reconnects, forever. State
changes are logged once ("connected", "unreachable", "recovered"), not every failed attempt.
Output: ``Reading`` for tags and ``SampleBlock`` for waveforms, on the shared samples queue.

A request that fails on its own (no answer, a malformed answer) marks its tags Bad for that
period, or skips that waveform poll; the connection is dropped only when it is lost, or after
``failed_requests_before_reconnect`` failed requests in a row with no answer in between.
Readings already read in a period are delivered in every case.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.collectors.modbus.config import ModbusDevice, ModbusTag, ModbusWaveform
from gateway.collectors.modbus.decode import (
    decode_string,
    decode_uint32,
    decode_values,
    decode_waveform,
)
from gateway.collectors.modbus.plan import ReadRequest, chunk_range, plan_reads
from gateway.collectors.modbus.transport import ModbusTransport
from gateway.collectors.state import StateEvents
from gateway.config.plant import Channel
from gateway.core.clock import Clock
from gateway.core.errors import (
    DeviceBusyError,
    PermanentError,
    RequestFailedError,
    TransientError,
)
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.runtime.queues import BoundedQueue
from gateway.runtime.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
STATES = ("connecting", "connected", "unreachable")


@dataclass
class _RingCursor:
    """Where a waveform reader is in the device's sample stream (survives reconnects)."""

    next_index: int | None = None  # absolute index of the next sample to read
    last_raw: int | None = None  # last raw uint32 counter value
    total: int = 0  # unwrapped counter

    def update(self, raw: int) -> bool:
        """Unwrap the uint32 counter; returns False if the device restarted (counter went back)."""
        if self.last_raw is None:
            self.total, self.last_raw = raw, raw
            return True
        delta = (raw - self.last_raw) % (1 << 32)
        self.last_raw = raw
        if delta >= 1 << 31:  # went backwards: the device restarted its stream
            self.total = raw
            return False
        self.total += delta
        return True


@dataclass
class DeviceCounters:
    connects: int = 0
    failed_connects: int = 0
    disconnects: int = 0
    reads: int = 0
    #: connections given up (lost, or too many failed requests in a row)
    transient_errors: int = 0
    permanent_errors: int = 0
    #: requests with no answer or a malformed one (their tags are Bad for that period)
    failed_requests: int = 0
    busy: int = 0
    stale_events: int = 0
    breaker_opens: int = 0
    samples_lost: int = 0
    overruns: int = 0
    late_polls: int = 0
    #: total seconds spent waiting for answers (``read_seconds / reads`` is the mean latency)
    read_seconds: float = 0.0


class ModbusCollector:
    """Collector for one device. ``state`` is ``connecting``, ``connected`` (the device
    answers) or ``unreachable`` (no connection, or no answer on it)."""

    def __init__(
        self,
        device_id: str,
        cfg: ModbusDevice,
        channels: dict[str, Channel],
        out: BoundedQueue[SampleBlock | Reading],
        clock: Clock,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = f"modbus:{device_id}"
        self.device_id, self.cfg, self.channels, self.out, self.clock = (
            device_id,
            cfg,
            channels,
            out,
            clock,
        )
        self.rand = rand
        self.transport = ModbusTransport(cfg)
        self.state = "connecting"
        self.counters = DeviceCounters()
        self._cursors = {w.channel: _RingCursor() for w in cfg.waveforms}
        self._plans = {
            group: plan_reads([t for t in cfg.tags if t.poll_group == group], cfg.max_gap)
            for group in cfg.poll_groups
        }
        self._failed_attempts = 0
        self.breaker = "closed"  # closed | open | half-open
        self._failed_in_row = 0  # failed requests since the last answer
        #: (function, address) of each request in trouble -> "exception" or "no answer"
        self._troubled: dict[tuple[int, int], str] = {}
        #: per tag poll loop, readings read this period and not yet queued
        self._pending: dict[str, list[Reading]] = {}
        self._busy_logged = False
        self._overrun_log = RateLimitedLog(log, interval_s=60.0)
        period = {t.channel: cfg.poll_groups[t.poll_group].period_s for t in cfg.tags}
        self._stale_limit = {c: p * cfg.stale_after_periods for c, p in period.items()}
        #: channel -> (monotonic s, last delivered reading)
        self._last: dict[str, tuple[float, Reading]] = {}
        self.stale: set[str] = set()
        self._states = StateEvents(STATES)
        #: set after every connection attempt (tests and status views wait on it)
        self.changed = asyncio.Event()

    async def wait_state(self, state: str) -> None:
        """Wait (on an event) until the collector is in ``state``."""
        await self._states.wait(state)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._states.enter(state)

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "breaker": self.breaker,
            "endpoint": self.cfg.endpoint,
            "stale": sorted(self.stale),
            **vars(self.counters),
        }

    async def run(self) -> None:
        started = self.clock.monotonic()
        watcher = asyncio.create_task(self._watch_stale(started), name=f"{self.name}:stale")
        try:
            while True:
                try:
                    await self.transport.connect()
                except TransientError as exc:
                    self.counters.failed_connects += 1
                    self._set_unreachable(str(exc))
                    self.changed.set()
                    await self.clock.sleep(self._connect_delay())
                    if self.breaker == "open":
                        self.breaker = "half-open"  # the next attempt is the probe
                    continue
                self.counters.connects += 1
                self._failed_in_row = 0
                self.changed.set()
                error = await self._poll_until_error()
                self.counters.transient_errors += 1
                if self.state == "connected":
                    self.counters.disconnects += 1
                self._set_unreachable(str(error))
                self.changed.set()
                await self.transport.close()
                await self.clock.sleep(self._connect_delay())
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.transport.close()

    def _connect_delay(self) -> float:
        """Backoff with jitter, or the breaker's cooldown once it opens (then one probe)."""
        attempt = self._failed_attempts
        self._failed_attempts += 1
        if self._failed_attempts < self.cfg.breaker_threshold:
            return self.cfg.reconnect.delay(attempt, self.rand())
        if self.breaker == "closed":
            self.counters.breaker_opens += 1
            log.warning(
                "device %s: circuit open after %d failed connects; probing every %.0fs",
                self.device_id,
                self._failed_attempts,
                self.cfg.breaker_cooldown_s,
            )
        self.breaker = "open"
        return self.cfg.breaker_cooldown_s

    async def _watch_stale(self, started: float) -> None:
        """Re-send tags with no reading (Good or Bad) within their limit once: the last value as
        Uncertain if the last reading was Good, else Bad and NaN. Logs the tags going stale at
        each check that finds some, and when all are fresh again."""
        if not self._stale_limit:
            return
        tick = min(self._stale_limit.values()) / 2
        while True:
            await self.clock.sleep(tick)
            now, ts = self.clock.monotonic(), self.clock.now_ns()
            newly = []
            for ch, limit in self._stale_limit.items():
                seen_at, last = self._last.get(ch, (started, None))
                if ch not in self.stale and now - seen_at > limit:
                    newly.append(ch)
                    if last is not None and last.quality == Quality.GOOD:
                        value, quality = last.value, Quality.UNCERTAIN
                    else:
                        value, quality = float("nan"), Quality.BAD
                    await self.out.put(Reading(ch, ts, ts, value, quality))
            if newly:
                log.warning(
                    "device %s: tag(s) %s stale (not refreshed in time)",
                    self.device_id,
                    ", ".join(newly),
                )
                self.stale.update(newly)
                self.counters.stale_events += len(newly)

    def _fresh(self, r: Reading) -> None:
        """Record ``r`` (Good or Bad) as its channel's last delivered reading."""
        self._last[r.channel] = (self.clock.monotonic(), r)
        if r.channel in self.stale:
            self.stale.discard(r.channel)
            if not self.stale:
                log.info("device %s: all tags fresh again", self.device_id)

    async def _poll_until_error(self) -> TransientError:
        """Run every poll loop of the connection until one fails with a ``TransientError``.

        Other exceptions propagate (the supervisor restarts the collector). A plain task set
        rather than a ``TaskGroup``: on Python 3.11 a TaskGroup leaves a stale cancel request
        on its parent after a child fails, which ``_raise_if_cancelling`` would then obey.
        """
        loops = [self._poll_tags(g, plan) for g, plan in self._plans.items() if plan]
        loops += [self._poll_waveform(w) for w in self.cfg.waveforms]
        tasks = [asyncio.create_task(c, name=f"{self.name}:poll{i}") for i, c in enumerate(loops)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        first: TransientError | None = None
        for t in done:
            e = None if t.cancelled() else t.exception()
            if e is not None and not isinstance(e, TransientError):
                raise e
            first = first or e
        for pending in self._pending.values():  # read before the failure: still delivered
            await self._deliver(pending)
        return first or TransientError("poll loops ended")

    async def _deliver(self, readings: list[Reading]) -> None:
        """Queue ``readings`` in order, removing each once queued (a cancel leaves the rest)."""
        while readings:
            await self.out.put(readings[0])
            self._fresh(readings.pop(0))

    # -- state changes, logged once each ------------------------------------------------
    def _set_connected(self) -> None:
        """The device answered (a connection alone does not count: a silent device stays
        unreachable instead of flapping)."""
        if self.state == "unreachable":
            log.info(
                "device %s recovered (%s) after %d failed attempt(s)",
                self.device_id,
                self.cfg.endpoint,
                self._failed_attempts,
            )
        else:
            log.info("device %s connected (%s)", self.device_id, self.cfg.endpoint)
        self._set_state("connected")
        self._failed_attempts = 0
        if self.breaker != "closed":
            log.info("device %s: circuit closed", self.device_id)
            self.breaker = "closed"

    def _set_unreachable(self, reason: str) -> None:
        if self.state != "unreachable":
            log.warning(
                "device %s unreachable (%s): %s; retrying with backoff",
                self.device_id,
                self.cfg.endpoint,
                reason,
            )
        self._set_state("unreachable")

    # -- reads --------------------------------------------------------------------------
    async def _read(
        self, function: int, address: int, count: int
    ) -> Sequence[int] | Sequence[bool]:
        """One request, retried ``busy_retries`` times (doubling pauses) while the device
        answers busy; then ``DeviceBusyError``. ``RequestFailedError`` (counted) if it got no
        valid answer; any answer, even an exception response, resets the failures in a row."""
        attempt = 0
        while True:
            self.counters.reads += 1
            t0 = self.clock.monotonic()
            try:
                values = await self.transport.read(function, address, count)
            except RequestFailedError:
                self.counters.failed_requests += 1
                self._failed_in_row += 1
                raise
            except PermanentError:
                self._failed_in_row = 0
                raise
            except DeviceBusyError:
                self._failed_in_row = 0
                self.counters.busy += 1
                if attempt >= self.cfg.busy_retries:
                    if not self._busy_logged:
                        log.warning(
                            "device %s busy: skipping polls until it answers", self.device_id
                        )
                        self._busy_logged = True
                    raise
                await self.clock.sleep(self.cfg.busy_retry_s * 2**attempt)
                attempt += 1
                continue
            self.counters.read_seconds += self.clock.monotonic() - t0
            self._failed_in_row = 0
            if self._busy_logged:
                log.info("device %s answers again", self.device_id)
                self._busy_logged = False
            if self.state != "connected":
                self._set_connected()
                self.changed.set()
            return values

    def _give_up_if_too_many(self, exc: RequestFailedError) -> None:
        """Raise ``TransientError`` (drop the connection) once ``failed_requests_before_reconnect``
        requests in a row have failed."""
        limit = self.cfg.failed_requests_before_reconnect
        if self._failed_in_row >= limit:
            raise TransientError(
                f"{self._failed_in_row} request(s) in a row without a valid answer, the last: {exc}"
            ) from exc

    def _trouble_starts(self, key: tuple[int, int], kind: str) -> bool:
        """Note that request ``key`` fails with ``kind``; True if that is a change (to log)."""
        if self._troubled.get(key) == kind:
            return False
        self._troubled[key] = kind
        return True

    def _trouble_ends(self, key: tuple[int, int]) -> bool:
        """Note that request ``key`` worked; True if it was in trouble (to log)."""
        return self._troubled.pop(key, None) is not None

    async def _next_period(self, period_s: float, deadline: float) -> float:
        """Sleep until ``deadline + period_s``; an overrun skips missed periods (counted)."""
        now = self.clock.monotonic()
        deadline += period_s
        if deadline < now:
            self.counters.late_polls += 1
            deadline = now
        await self.clock.sleep(deadline - now)
        return deadline

    async def _poll_tags(self, group: str, plan: list[ReadRequest]) -> None:
        """Read ``plan`` every period and queue its readings at the end of the period; on
        ``TransientError`` they stay in ``_pending`` for ``_poll_until_error`` to deliver."""
        period = self.cfg.poll_groups[group].period_s
        readings = self._pending[group] = []
        deadline = self.clock.monotonic()
        while True:
            ts = self.clock.now_ns()
            for req in plan:
                await self._read_request(req, ts, readings)
            await self._deliver(readings)
            deadline = await self._next_period(period, deadline)

    async def _read_request(self, req: ReadRequest, ts: int, readings: list[Reading]) -> None:
        """Read ``req`` and append its tags' readings: decoded, Bad for an exception response or
        a failed request, none while the device is busy. ``TransientError`` (after appending)
        when the connection is lost or too many requests in a row failed."""
        key = (req.function, req.address)
        tags = ", ".join(t.channel for t in req.tags)
        try:
            raw = await self._read(req.function, req.address, req.count)
        except DeviceBusyError:
            return  # no fresh value this period; the stale watch covers long spells
        except PermanentError as exc:
            self.counters.permanent_errors += 1
            if self._trouble_starts(key, "exception"):
                log.error("device %s: %s; tags %s are marked bad", self.device_id, exc, tags)
            readings += [Reading(t.channel, ts, ts, float("nan"), Quality.BAD) for t in req.tags]
            return
        except RequestFailedError as exc:
            if self._trouble_starts(key, "no answer"):
                log.warning(
                    "device %s: %s; tags %s are marked bad until it answers",
                    self.device_id,
                    exc,
                    tags,
                )
            readings += [Reading(t.channel, ts, ts, float("nan"), Quality.BAD) for t in req.tags]
            self._give_up_if_too_many(exc)
            return
        if self._trouble_ends(key):
            log.info("device %s: read at %d works again", self.device_id, req.address)
        readings += [self._decode_tag(t, req, raw, ts) for t in req.tags]

    def _decode_tag(
        self, tag: ModbusTag, req: ReadRequest, raw: Sequence[int] | Sequence[bool], ts: int
    ) -> Reading:
        off = tag.address - req.address
        if tag.type == "bit":
            value = float(bool(raw[off]))
        elif tag.type == "string":  # strings are not numeric readings; length only for checks
            value = float(
                len(decode_string([int(r) for r in raw[off : off + tag.length]], tag.order))
            )
        else:
            regs = [int(r) for r in raw[off : off + tag.register_count]]
            value = float(decode_values(regs, tag.type, tag.order)[0]) * tag.scale + tag.offset
        quality = Quality.GOOD if np.isfinite(value) else Quality.BAD
        return Reading(tag.channel, ts, ts, value, quality)

    async def _poll_waveform(self, w: ModbusWaveform) -> None:
        fs = self.channels[w.channel].sample_rate_hz
        assert fs is not None
        cur = self._cursors[w.channel]
        deadline = self.clock.monotonic()
        while True:
            key = (w.function, w.ring_address)
            try:
                block = await self._read_ring(w, cur, fs)
            except DeviceBusyError:
                block = None  # the ring keeps the samples: the next poll reads them
            except PermanentError as exc:  # a wrong address: count, log once, keep polling
                block = None
                self.counters.permanent_errors += 1
                if self._trouble_starts(key, "exception"):
                    log.error(
                        "device %s: %s; waveform %s not available", self.device_id, exc, w.channel
                    )
            except RequestFailedError as exc:  # skip this poll: the ring keeps the samples
                block = None
                if self._trouble_starts(key, "no answer"):
                    log.warning(
                        "device %s: %s; waveform %s polls skipped until it answers",
                        self.device_id,
                        exc,
                        w.channel,
                    )
                self._give_up_if_too_many(exc)
            else:
                if self._trouble_ends(key):
                    log.info("device %s: waveform %s readable again", self.device_id, w.channel)
            if block is not None:
                await self.out.put(block)
            deadline = await self._next_period(w.period_s, deadline)

    async def _read_ring(
        self, w: ModbusWaveform, cur: _RingCursor, fs: float
    ) -> SampleBlock | None:
        raw_counter = decode_uint32(
            [int(r) for r in await self._read(w.function, w.sequence_address, 2)], w.sequence_order
        )
        counter_ts = self.clock.now_ns()  # sample counter - 1 was taken about now
        if not cur.update(raw_counter) and cur.next_index is not None:
            log.warning(
                "device %s: %s stream restarted (counter went back)", self.device_id, w.channel
            )
            cur.next_index = None
        counter = cur.total
        start = max(0, counter - w.ring_length) if cur.next_index is None else cur.next_index
        if counter - start > w.ring_length:
            lost = counter - w.ring_length - start
            self.counters.overruns += 1
            self.counters.samples_lost += lost
            self._overrun_log.warning(
                "device %s: %s ring overrun, %d samples lost (poll faster or enlarge the ring)",
                self.device_id,
                w.channel,
                lost,
            )
            start = counter - w.ring_length
        n = counter - start
        if n <= 0:
            return None
        regs = np.empty(n, dtype=np.uint16)
        pos, filled = start % w.ring_length, 0
        for seg_addr, seg_len in (
            (pos, min(n, w.ring_length - pos)),
            (0, n - min(n, w.ring_length - pos)),
        ):
            for addr, cnt in chunk_range(w.ring_address + seg_addr, seg_len):
                regs[filled : filled + cnt] = await self._read(w.function, addr, cnt)
                filled += cnt
        # samples overwritten while we read are unusable: drop them from the front
        raw_after = decode_uint32(
            [int(r) for r in await self._read(w.function, w.sequence_address, 2)], w.sequence_order
        )
        after = counter + ((raw_after - raw_counter) % (1 << 32))
        overwritten = after - w.ring_length - start
        if overwritten > 0:
            self.counters.samples_lost += min(overwritten, n)
            regs, start = regs[min(overwritten, n) :], start + min(overwritten, n)
        cur.next_index = counter
        if regs.shape[0] == 0:
            return None
        samples = decode_waveform(regs, w.sample_type, w.scale, w.offset)
        source_ts = counter_ts - round((counter - start) / fs * 1e9)
        return SampleBlock(w.channel, source_ts, self.clock.now_ns(), fs, samples, start)
