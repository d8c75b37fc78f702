"""Alert actions: write an output (a Modbus coil or holding register, or an OPC UA variable)
when a rule's alert is raised or cleared. Off unless a rule has an ``action``.

``ActionRunner`` is a stage fed by the alert stage (``on_events``, as an ``AlertListener``): it
handles transitions one at a time, in order, so the alert stage never waits on a device.

- Exactly once per transition: the last value written per rule is kept in ``state_path``
  (JSON, replaced atomically after each write). A transition whose value the output already
  holds (per that file, e.g. the same alert raised again after a restart) is not written again.
- Rate limit: at most one write per rule per ``min_interval_s``; a later transition waits for
  its turn (it is not dropped, so the output ends in the right state).
- At start (``reconcile``): wherever the value last written for a rule disagrees with its
  alert as restored from the previous run (a transition whose write was still waiting for its
  turn or its retries when the gateway stopped), the value the alert implies is written.
- Failures: an unreachable device is retried with backoff (``attempts`` times); a refused
  write is not retried. Every outcome (written, skipped, failed) becomes an ``ActionRecord``
  on the output queue (the store keeps it) and is counted.

Drains its input on close, then returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.alerts.config import AlertRule, ModbusAction, OpcUaAction
from gateway.core.clock import Clock
from gateway.core.configbase import Backoff
from gateway.core.errors import PermanentError, TransientError
from gateway.core.records import ActionRecord, AlertEvent, AlertState, Severity
from gateway.runtime.queues import BoundedQueue, QueueClosed

log = logging.getLogger(__name__)

Target = ModbusAction | OpcUaAction
Writer = Callable[[Target, float], Awaitable[None]]
RETRY = Backoff(initial_s=0.5, max_s=5.0, factor=2.0, jitter=0.0)


def describe(t: Target) -> str:
    if isinstance(t, OpcUaAction):
        return f"{t.endpoint}#{t.node_id}"
    return f"modbus://{t.host}:{t.port}/{t.device_id}/{t.table}/{t.address}"


async def write_target(t: Target, value: float) -> None:
    """Write ``value`` to a Modbus or OPC UA target (see ``write_modbus``, ``write_opcua``)."""
    if isinstance(t, OpcUaAction):
        await write_opcua(t, value)
    else:
        await write_modbus(t, int(value))


async def write_opcua(t: OpcUaAction, value: float) -> None:
    """Write ``value`` (converted to ``t.data_type``) to the variable, one session per write.
    ``TransientError`` if the server cannot be reached, ``PermanentError`` if it refuses."""
    client = Client(t.endpoint, timeout=t.timeout_s)
    if t.username is not None:
        client.set_user(t.username)
        client.set_password(t.password or "")
    vtype = ua.VariantType[t.data_type]
    v: float | int | bool = (
        bool(value)
        if t.data_type == "Boolean"
        else float(value)
        if t.data_type in ("Float", "Double")
        else int(value)
    )
    try:
        async with asyncio.timeout(t.timeout_s):
            await client.connect()
    except (OSError, TimeoutError, UaError) as exc:
        raise TransientError(f"{t.endpoint} unreachable: {exc}") from exc
    try:
        await client.get_node(t.node_id).write_value(ua.DataValue(ua.Variant(v, vtype)))
    except UaStatusCodeError as exc:
        raise PermanentError(f"server refused the write: {exc}") from exc
    except (OSError, TimeoutError, UaError) as exc:
        raise TransientError(f"{t.endpoint}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError, TimeoutError, UaError):
            await client.disconnect()


async def write_modbus(t: ModbusAction, value: int) -> None:
    """Write ``value`` to the target (one connection per write: actions are rare).
    ``TransientError`` if the device cannot be reached, ``PermanentError`` if it refuses."""
    client = AsyncModbusTcpClient(t.host, port=t.port, timeout=t.timeout_s, retries=0)
    try:
        if not await client.connect():
            raise TransientError(f"{t.host}:{t.port} unreachable")
        if t.table == "coil":
            r = await client.write_coil(t.address, bool(value), device_id=t.device_id)
        else:
            r = await client.write_register(t.address, value, device_id=t.device_id)
        if r.isError():
            raise PermanentError(f"device refused the write: {r}")
    except ModbusException as exc:
        raise TransientError(str(exc)) from exc
    finally:
        client.close()


class ActionRunner:
    name = "alert-actions"

    def __init__(
        self,
        rules: dict[str, AlertRule],
        state_path: Path,
        out: BoundedQueue[ActionRecord],
        clock: Clock,
        writer: Writer = write_target,
        attempts: int = 3,
    ) -> None:
        self.rules = {n: r for n, r in rules.items() if r.action is not None}
        self.state_path, self.out, self.clock, self.writer = state_path, out, clock, writer
        self.attempts = attempts
        self.inp: BoundedQueue[AlertEvent] = BoundedQueue("alert-actions", 1024, "block")
        self.counts = {"written": 0, "skipped": 0, "failed": 0}
        self.last: dict[str, dict[str, object]] = self._load()
        self._written_at: dict[str, float] = {}
        #: writes ``run`` makes first (``reconcile``)
        self._reconcile: list[AlertEvent] = []

    def status(self) -> dict[str, object]:
        return dict(self.counts)

    def reconcile(self, active: dict[str, tuple[str, Severity]]) -> int:
        """Have ``run`` make first, before any new transition, a write for each rule whose last
        written value disagrees with ``active`` (rule -> (alert id, severity) of the alerts
        restored from the previous run): the raise value for an active alert, the clear value
        for a rule last written for an alert that is no longer active. A rule never written and
        not active is left alone. Returns how many writes are due."""
        now = self.clock.now_ns()
        queued = 0
        for name, rule in self.rules.items():
            assert rule.action is not None
            t, last = rule.action.target, self.last.get(name)
            if name in active:
                (alert_id, severity), state, want = active[name], AlertState.RAISED, t.on_raise
            elif last is not None:
                alert_id, state = str(last.get("alert_id", "")), AlertState.CLEARED
                want = t.on_clear
                severity = Severity[rule.severity_name.upper()]
            else:
                continue
            if last is not None and last.get("value") == want and last.get("target") == describe(t):
                continue
            self._reconcile.append(
                AlertEvent(
                    alert_id,
                    rule.asset,
                    name,
                    state,
                    severity,
                    now,
                    "output reconciled at start with the alert restored from the previous run",
                    category=rule.category,
                    channel=rule.channel or "",
                )
            )
            queued += 1
        if queued:
            log.info("alert actions: %d output(s) to reconcile with the restored alerts", queued)
        return queued

    async def on_events(self, events: Sequence[AlertEvent]) -> Sequence[ActionRecord]:
        for ev in events:
            if ev.rule in self.rules and ev.state in (AlertState.RAISED, AlertState.CLEARED):
                await self.inp.put(ev)
        return ()

    async def run(self) -> None:
        while self._reconcile:
            ev = self._reconcile[0]
            await self.out.put(await self._handle(ev))
            self._reconcile.pop(0)
        while True:
            try:
                ev = await self.inp.get()
            except QueueClosed:
                return
            await self.out.put(await self._handle(ev))

    async def _handle(self, ev: AlertEvent) -> ActionRecord:
        action = self.rules[ev.rule].action
        assert action is not None
        t = action.target
        value = t.on_raise if ev.state == AlertState.RAISED else t.on_clear
        last = self.last.get(ev.rule)
        if last is not None and last.get("value") == value and last.get("target") == describe(t):
            return self._audit(ev, value, "skipped", f"already written by {last.get('alert_id')}")
        since = self._written_at.get(ev.rule)
        if since is not None:
            wait = action.min_interval_s - (self.clock.monotonic() - since)
            if wait > 0:
                await self.clock.sleep(wait)
        error = ""
        for attempt in range(self.attempts):
            try:
                await self.writer(t, value)
            except TransientError as exc:
                error = str(exc)
                if attempt + 1 < self.attempts:
                    await self.clock.sleep(RETRY.delay(attempt))
                continue
            except PermanentError as exc:
                error = str(exc)
                break
            self._written_at[ev.rule] = self.clock.monotonic()
            self.last[ev.rule] = {
                "value": value,
                "target": describe(t),
                "alert_id": ev.alert_id,
                "transition": ev.state.value,
                "ts_ns": self.clock.now_ns(),
            }
            self._save()
            return self._audit(ev, value, "written")
        return self._audit(ev, value, "failed", error)

    def _audit(self, ev: AlertEvent, value: float, outcome: str, detail: str = "") -> ActionRecord:
        self.counts[outcome] += 1
        target = describe(self.rules[ev.rule].action.target)  # type: ignore[union-attr]
        level = logging.WARNING if outcome == "failed" else logging.INFO
        log.log(level, "alert action %s: %s %s := %g %s", ev.rule, outcome, target, value, detail)
        return ActionRecord(
            ev.alert_id,
            ev.asset,
            ev.rule,
            ev.state,
            self.clock.now_ns(),
            target,
            value,
            outcome,
            detail,
        )

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # unreadable state: act on the next transitions as if nothing had been written
            log.error("alert action state %s unreadable (%s): starting empty", self.state_path, exc)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(self.last, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
