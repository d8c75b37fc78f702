"""Escalation: snapshots of escalating assets go to an HTTPS endpoint; its verdicts come back.

``Escalator`` (a supervised stage) reads the journal's bulk lane with its own durable cursor
(sink ``cfg.name``, configured in the journal like every sink, so the store's bounds treat its
backlog as they treat the uplink's). Records that are not snapshots of an asset with
``escalate = true`` are acknowledged without being sent: raw data of other assets never leaves.

Each snapshot is POSTed as JSON (``asset``, ``ts_ns``, ``model_version`` and the snapshot
payload) with ``Idempotency-Key: <snapshot_id>`` and the bearer token; it is acknowledged only
after a 2xx, so an outage or a restart re-sends it with the same key (the endpoint keeps one per
key). Failures: connection errors, timeouts, 5xx and 401/403/404 retry after an exponential
backoff; 429/503 wait for Retry-After (capped); other 4xx copy the record to the dead letters and
move on. A 2xx JSON body with a ``verdict`` is journaled as a ``verdict`` record (bulk lane:
``alert_id``, ``snapshot_id``, ``verdict``, ``confidence``) before the snapshot is acknowledged,
and handed to ``listeners`` (e.g. the OPC UA server's ``LastVerdict`` tag).
``escalated_bytes`` counts request bodies accepted, per asset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable
from typing import Protocol

import aiohttp

from gateway.core.clock import Clock
from gateway.forwarding.config import EscalationConfig, ForwardingConfig
from gateway.store.access import JournalAccess
from gateway.store.journal import Row
from gateway.uplink.influx import THROTTLE_STATUSES, parse_retry_after

log = logging.getLogger(__name__)
BATCH = 500
RETRY_STATUSES = frozenset({401, 403, 404, 408})


class VerdictListener(Protocol):
    async def publish_verdict(self, asset: str, verdict: str, ts_ns: int) -> None: ...


class _Retry(Exception):
    def __init__(self, msg: str, after_s: float | None = None, throttled: bool = False) -> None:
        super().__init__(msg)
        self.after_s, self.throttled = after_s, throttled


class _Rejected(Exception):
    pass


class Escalator:
    def __init__(
        self,
        cfg: EscalationConfig,
        forwarding: ForwardingConfig,
        access: JournalAccess,
        clock: Clock,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.cfg, self.forwarding, self.access, self.clock, self.rand = (
            cfg,
            forwarding,
            access,
            clock,
            rand,
        )
        self._appended_ev = access.appended_event()  # set by every append
        self.name = f"escalation:{cfg.name}"
        self.listeners: list[VerdictListener] = []
        self.state = "starting"
        self.sent = 0
        self.verdicts = 0
        self.rejected = 0
        self.retries = 0
        self.throttled = 0
        self.last_error = ""
        self.escalated_bytes: dict[str, int] = {}
        self.changed = asyncio.Event()  # set after each acknowledgement, retry, state change
        self.idle = asyncio.Event()  # set while nothing is left to read
        self._session: aiohttp.ClientSession | None = None
        self._attempt = 0

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "sent": self.sent,
            "verdicts": self.verdicts,
            "rejected": self.rejected,
            "retries": self.retries,
            "throttled": self.throttled,
            "last_error": self.last_error,
        }

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(
            cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None
        )

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl()),
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
        )
        try:
            while True:
                self._appended_ev.clear()
                rows = await self.access.call(self.access.journal.read, self.cfg.name, BATCH)
                if not rows:
                    self.idle.set()
                    self.changed.set()
                    await self._appended_ev.wait()
                    continue
                self.idle.clear()
                last = 0
                for r in rows:
                    if r.kind == "snapshot" and self.forwarding.for_asset(r.asset).escalate:
                        if last:  # acknowledge what went before first (nothing is re-read)
                            await self._ack(last)
                        await self._escalate(r)
                    last = r.seq
                await self._ack(last)
        finally:
            session, self._session = self._session, None
            await session.close()

    async def drained(self) -> None:
        """Wait until every stored record was handled (for tests and orderly shutdowns)."""
        while True:
            self.changed.clear()
            n = await self.access.call(self._unread)
            if n == 0 and self.idle.is_set():
                return
            await self.changed.wait()

    def _unread(self) -> int:
        return len(self.access.journal.read(self.cfg.name, 1))

    async def _ack(self, seq: int) -> None:
        await self.access.call(self.access.journal.ack, self.cfg.name, seq, "bulk")
        self.changed.set()

    async def _escalate(self, row: Row) -> None:
        body = json.dumps(
            {
                "asset": row.asset,
                "ts_ns": row.ts_ns,
                "model_version": row.model_version,
                **row.payload,
            },
            separators=(",", ":"),
        ).encode()
        while True:
            try:
                answer = await self._post(body, str(row.payload.get("snapshot_id", row.seq)))
            except _Rejected as exc:
                self.rejected += 1
                self.last_error = str(exc)
                await self.access.call(
                    self.access.journal.dead_letter, self.cfg.name, [row], str(exc)
                )
                log.warning("escalation: endpoint rejected snapshot %d: %s", row.seq, exc)
                return
            except _Retry as exc:
                self.retries += 1
                self.throttled += exc.throttled
                self.last_error = str(exc)
                self._set_state("down")
                self.changed.set()
                wait = exc.after_s
                if wait is None:
                    wait = self.cfg.backoff.delay(self._attempt, self.rand())
                    self._attempt += 1
                await self.clock.sleep(min(wait, self.cfg.max_retry_after_s))
                continue
            break
        self._attempt = 0
        self.sent += 1
        self.escalated_bytes[row.asset] = self.escalated_bytes.get(row.asset, 0) + len(body)
        self._set_state("up")
        if isinstance(answer, dict) and answer.get("verdict") is not None:
            await self._verdict(row, answer)

    async def _post(self, body: bytes, key: str) -> object:
        assert self._session is not None
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        token = self.cfg.token.get_secret_value() if self.cfg.token else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.post(str(self.cfg.url), data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if status in THROTTLE_STATUSES:
            after = parse_retry_after(retry_after, self.clock.now_ns() / 1e9)
            raise _Retry(f"HTTP {status}", after, throttled=True)
        if status >= 500 or status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            raise _Rejected(f"HTTP {status}: {text[:200]}")
        with contextlib.suppress(ValueError):
            return json.loads(text) if text.strip() else None
        return None

    async def _verdict(self, row: Row, answer: dict[str, object]) -> None:
        conf = answer.get("confidence")
        v = Row(
            kind="verdict",
            ts_ns=row.ts_ns,
            asset=row.asset,
            channel="",
            model_version=row.model_version,
            payload={
                "alert_id": row.payload.get("alert_id", ""),
                "snapshot_id": row.payload.get("snapshot_id", ""),
                "verdict": str(answer.get("verdict")),
                "confidence": float(conf) if isinstance(conf, int | float) else None,
            },
        )
        await self.access.call(self.access.journal.append, [v], self.clock.now_ns())
        self.access.notify_appended()
        self.verdicts += 1
        for listener in self.listeners:
            try:
                await listener.publish_verdict(row.asset, str(answer.get("verdict")), row.ts_ns)
            except Exception:  # a listener's failure must not stop escalation
                log.exception("escalation: verdict listener failed")

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        prev, self.state = self.state, state
        logf = log.warning if state == "down" else log.info
        logf(
            "escalation %s %s (was %s)%s",
            self.cfg.name,
            state,
            prev,
            f": {self.last_error}" if state == "down" else "",
        )
        self.changed.set()
