"""The Modbus collector: one supervised task per device.

It connects, then runs one poll loop per poll group and one per waveform ring until the
connection fails; then it closes, waits with backoff and jitter, and reconnects, forever. State
changes are logged once ("connected", "unreachable", "recovered"), not every failed attempt.
Output: ``Reading`` for tags and ``SampleBlock`` for waveforms, on the shared samples queue.
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
from gateway.core.errors import DeviceBusyError, PermanentError, TransientError
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
    transient_errors: int = 0
    permanent_errors: int = 0
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
        self._bad_requests: set[tuple[int, int]] = set()
        self._busy_logged = False
        self._overrun_log = RateLimitedLog(log, interval_s=60.0)
        period = {t.channel: cfg.poll_groups[t.poll_group].period_s for t in cfg.tags}
        self._stale_limit = {c: p * cfg.stale_after_periods for c, p in period.items()}
        self._last_ok: dict[str, tuple[float, float]] = {}  # channel -> (monotonic s, value)
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
        """Re-send tags not refreshed within their limit once, as Uncertain with the last value
        (Bad and NaN if never read); log when the device's set of stale tags changes."""
        if not self._stale_limit:
            return
        tick = min(self._stale_limit.values()) / 2
        while True:
            await self.clock.sleep(tick)
            now, ts = self.clock.monotonic(), self.clock.now_ns()
            newly = []
            for ch, limit in self._stale_limit.items():
                seen_at, value = self._last_ok.get(ch, (started, float("nan")))
                if ch not in self.stale and now - seen_at > limit:
                    newly.append(ch)
                    quality = Quality.UNCERTAIN if ch in self._last_ok else Quality.BAD
                    await self.out.put(Reading(ch, ts, ts, value, quality))
            if newly:
                if not self.stale:
                    log.warning(
                        "device %s: tag(s) %s stale (not refreshed in time)",
                        self.device_id,
                        ", ".join(newly),
                    )
                self.stale.update(newly)
                self.counters.stale_events += len(newly)

    def _fresh(self, r: Reading) -> None:
        if r.quality != Quality.GOOD:
            return
        self._last_ok[r.channel] = (self.clock.monotonic(), r.value)
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
        return first or TransientError("poll loops ended")

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
        answers busy; then ``DeviceBusyError``."""
        attempt = 0
        while True:
            self.counters.reads += 1
            t0 = self.clock.monotonic()
            try:
                values = await self.transport.read(function, address, count)
            except DeviceBusyError:
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
            if self._busy_logged:
                log.info("device %s answers again", self.device_id)
                self._busy_logged = False
            if self.state != "connected":
                self._set_connected()
                self.changed.set()
            return values

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
        period = self.cfg.poll_groups[group].period_s
        deadline = self.clock.monotonic()
        while True:
            ts = self.clock.now_ns()
            readings: list[Reading] = []
            for req in plan:
                key = (req.function, req.address)
                try:
                    raw = await self._read(req.function, req.address, req.count)
                except DeviceBusyError:
                    continue  # no fresh value this period; the stale watch covers long spells
                except PermanentError as exc:
                    self.counters.permanent_errors += 1
                    if key not in self._bad_requests:
                        self._bad_requests.add(key)
                        log.error(
                            "device %s: %s; tags %s are marked bad",
                            self.device_id,
                            exc,
                            ", ".join(t.channel for t in req.tags),
                        )
                    readings += [
                        Reading(t.channel, ts, ts, float("nan"), Quality.BAD) for t in req.tags
                    ]
                    continue
                if key in self._bad_requests:
                    self._bad_requests.discard(key)
                    log.info("device %s: read at %d works again", self.device_id, req.address)
                readings += [self._decode_tag(t, req, raw, ts) for t in req.tags]
            for r in readings:
                self._fresh(r)
                await self.out.put(r)
            deadline = await self._next_period(period, deadline)

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
                if key not in self._bad_requests:
                    self._bad_requests.add(key)
                    log.error(
                        "device %s: %s; waveform %s not available", self.device_id, exc, w.channel
                    )
            else:
                if key in self._bad_requests:
                    self._bad_requests.discard(key)
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
