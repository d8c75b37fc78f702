"""End to end with the gateway as a real process (``pdm-gateway run CONFIG``): simulated machines
over Modbus -> gateway -> a real VictoriaMetrics behind a fault proxy. During an uplink cut the
store reaches its byte budget and evicts, every device stops answering, and the gateway is killed
with SIGKILL; it is restarted while the uplink is still cut, then everything comes back.

Asserted: the journal is intact after the kill and holds every record the gateway reported
committed, including the outage's unsent sensor events; every record it held arrives upstream
once per key; the only records missing upstream are the ones the store counted as evicted, and
those are features and scores, never alerts or sensor events; health (``/healthz`` and
``/status``) reports each episode (uplink down, store full, devices unreachable, unclean restart)
and every component recovers by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.store.journal import PRIORITY_KINDS, Journal, Row
from tests.conftest import Sim, plant_toml
from tests.integration.test_pipeline_uplink import uplink_toml
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics

REPO = Path(__file__).resolve().parents[2]
#: the store's byte budget: small, so a short uplink cut fills it (the journal keeps a WAL
#: allowance of at least 128 KiB out of it)
STORE_MAX_BYTES = 1 << 19
#: the metric each record kind is written as, one sample per record
METRIC = {
    "feature": "feature_quality",
    "score": "score_score",
    "alert": "alert_state_code",
    "sensor": "sensor_state_code",
}
ENV = {"PDM_TEST_TOKEN": "s3cr3t"}
#: alerts (priority records the budget must keep): m1's RMS raises at once and stays raised;
#: each vibration channel raises a sensor event while its device is unreachable
RULES = """
[alerts.rules.m1_rms]
asset = "m1"
source = "feature"
channel = "m1_vib"
feature = "rms"
raise_level = 0.0
clear_level = -1.0
on_n = 1
on_m = 1
""" + "".join(
    f"""
[alerts.rules.m{u}_lost]
asset = "m{u}"
source = "sensor"
channel = "m{u}_vib"
condition = "disconnected"
"""
    for u in (1, 2)
)

Status = dict[str, Any]


class Gateway:
    """One ``pdm-gateway run`` process; its log lines are kept (and drained, so it never blocks
    on a full pipe)."""

    def __init__(self, proc: asyncio.subprocess.Process, state: Path) -> None:
        self.proc, self.state = proc, state
        self.lines: list[str] = []
        self.url = ""
        self._drain = asyncio.create_task(self._read())
        self._line = asyncio.Event()

    @classmethod
    async def start(cls, config: Path, state: Path) -> Gateway:
        (state / "http.url").unlink(missing_ok=True)
        exe = Path(sys.executable).parent / "pdm-gateway"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            "run",
            str(config),
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"},
        )
        gw = cls(proc, state)
        await gw.wait_line("health and metrics on")
        gw.url = (state / "http.url").read_text().strip()
        return gw

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))
            self._line.set()

    async def wait_line(self, needle: str) -> None:
        async with asyncio.timeout(60):  # hang guard
            while not any(needle in line for line in self.lines):
                if self._drain.done():
                    raise AssertionError("gateway exited:\n" + "".join(self.lines[-30:]))
                self._line.clear()
                await self._line.wait()

    async def get(self, path: str) -> Status:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}{path}") as r:
            body = await r.json()
            assert isinstance(body, dict)
            return body

    async def until(self, pred: Callable[[Status], bool], what: str) -> Status:
        """Poll ``/status`` until ``pred`` holds; returns that snapshot (hang guard 60 s)."""
        try:
            async with asyncio.timeout(60):
                while True:
                    st = await self.get("/status")
                    if pred(st):
                        return st
                    await asyncio.sleep(0.1)  # polling another process, not a timing
        except TimeoutError:
            raise AssertionError(f"never: {what}\n{st}\n" + "".join(self.lines[-20:])) from None

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL
        await self._drain

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await self.proc.wait()
            await self._drain
        return code


def reasons(st: Status) -> str:
    return " | ".join(st["health"]["reasons"])


def drops(st: Status) -> dict[str, int]:
    d = st["store"]["drops"]
    assert isinstance(d, dict)
    return {str(k): int(v) for k, v in d.items()}


def saved_alerts(state: Path) -> dict[str, Any]:
    """The active alerts the gateway has saved for its next run (written atomically)."""
    try:
        data = json.loads((state / "alerts-active.json").read_text())
    except FileNotFoundError:
        return {}
    assert isinstance(data, dict)
    return data


def sequence(path: Path) -> int:
    """The journal's seq counter: every seq up to it was assigned to a committed record."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def journal_rows(path: Path) -> tuple[list[Row], int, int]:
    """Every record in the journal, with the sink's bulk and priority cursors."""
    j = Journal(path)
    try:
        rows = j.read("all", 10**7, "bulk", after=0) + j.read("all", 10**7, "priority", after=0)
        return rows, j.cursor("influxdb", "bulk"), j.cursor("influxdb", "priority")
    finally:
        j.close()


async def upstream(vm: VictoriaMetrics) -> dict[str, set[tuple[str, str, int]]]:
    """Per record kind, the keys (asset, channel, ms) on the server, checking each is there
    once."""
    out: dict[str, set[tuple[str, str, int]]] = {}
    for kind, metric in METRIC.items():
        keys: set[tuple[str, str, int]] = set()
        n = 0
        for labels, ts, _ in await vm.values(metric):
            keys.add((labels.get("asset", ""), labels.get("channel", ""), ts))
            n += 1
        assert n == len(keys), f"{metric}: two records share a key"
        out[kind] = keys
    return out


def key(r: Row) -> tuple[str, str, int]:
    return (r.asset, r.channel, r.ts_ns // 1_000_000)


async def test_kill_9_and_disk_budget_during_an_uplink_cut_lose_nothing_accepted(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    journal = state / "journal.sqlite"
    config = tmp_path / "gateway.toml"
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        try:
            # short windows: many records per second
            extra = uplink_toml(proxy.url, 50) + RULES
            text = plant_toml(port, state, units=2, extra=extra, window=256, hop=128)
            # a small byte budget; the writer commits often so the budget is reached in seconds
            config.write_text(
                text.replace("[store]\n", f"[store]\nmax_bytes = {STORE_MAX_BYTES}\n")
            )
            gw = await Gateway.start(config, state)
            try:
                # data flows upstream
                await gw.until(
                    lambda s: s["uplink"]["influxdb"]["sent"] > 20 and s["health"]["state"] == "ok",
                    "data flowing with health ok",
                )
                # the uplink is cut and the store reaches its budget: both reported
                proxy.mode = "cut"
                st = await gw.until(lambda s: "uplink influxdb down" in reasons(s), "uplink down")
                assert st["health"]["state"] == "degraded"
                st = await gw.until(lambda s: "store full" in reasons(s), "store full in health")
                assert st["store"]["evicting"]
                healthz = await gw.get("/healthz")
                assert any("store full" in r for r in healthz["reasons"]), healthz
                # every device stops answering: no new records; health says so
                modbus_sim.server.inject("no_response")
                await gw.until(
                    lambda s: (
                        s["health"]["state"] == "failing"
                        and "all devices unreachable" in reasons(s)
                        and len(s["alerts"]["active"]) == 3  # m1_rms and both sensor events
                    ),
                    "all devices unreachable, with their sensor events",
                )
                # quiet: nothing queued, nothing pending, the committed seq no longer moves, and
                # the active alerts are in their file (its write follows a transition: a kill
                # in between would lose it, and the restart would raise them again)
                seen: list[int] = []

                def quiet(s: Status) -> bool:
                    idle = all(q["depth"] == 0 for q in s["queues"].values())
                    idle = idle and not s["store"]["pending"]
                    idle = idle and len(saved_alerts(state)) == 3
                    seen.append(int(s["store"]["last_seq"]) if idle else -1)
                    return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3] >= 0

                before_kill = await gw.until(quiet, "the store quiet")
            except BaseException:
                gw.proc.kill()
                await gw.proc.wait()
                raise
            await gw.kill()
            with pytest.raises(aiohttp.ClientConnectionError):  # nothing answers for it now
                await gw.get("/healthz")
            assert len(before_kill["alerts"]["active"]) == 3
            dropped_1 = drops(before_kill)
            committed_1 = int(before_kill["store"]["last_seq"])
            assert dropped_1, "the budget was never reached"
            assert set(dropped_1) <= {"feature", "score"}, dropped_1  # never alerts/sensor events
            assert before_kill["uplink"]["influxdb"]["rejected"] == 0

            # after the kill: intact, and it holds what was committed (no seq after the snapshot)
            assert sequence(journal) == committed_1
            held, held_cursor, held_prio_cursor = journal_rows(journal)
            assert max((r.seq for r in held), default=0) == committed_1
            backlog = sum(1 for r in held if r.kind not in PRIORITY_KINDS and r.seq > held_cursor)
            assert backlog > 100  # unsent records the restart must send
            # the outage's sensor events (unsent: the uplink is cut) are held, never evicted
            unsent_prio = [r for r in held if r.kind in PRIORITY_KINDS and r.seq > held_prio_cursor]
            assert sorted(r.channel for r in unsent_prio) == ["m1_vib", "m2_vib"]

            # restarted while the uplink is still cut and the devices still silent
            gw = await Gateway.start(config, state)
            try:
                st = await gw.until(
                    lambda s: (
                        "previous run ended without a clean stop" in reasons(s)
                        and "uplink influxdb down" in reasons(s)
                    ),
                    "the unclean restart reported",
                )
                assert st["run"] == {"unclean_start": True, "recovered": False}
                # the alerts active at the kill are active again, not raised a second time
                assert st["alerts"]["active"] == before_kill["alerts"]["active"]
                await gw.wait_line("previous run ended without a clean stop")
                # the uplink comes back: the backlog from before the kill is resent
                proxy.mode = "pass"
                await gw.until(lambda s: s["run"]["recovered"], "backlog resent")
                # the devices answer again: everything recovers by itself
                modbus_sim.server.clear("no_response")
                sent = st["uplink"]["influxdb"]["sent"]
                final = await gw.until(
                    lambda s: (
                        s["health"] == {"state": "ok", "reasons": []}
                        and all(d["state"] == "connected" for d in s["devices"].values())
                        and s["uplink"]["influxdb"]["state"] == "up"
                        and s["uplink"]["influxdb"]["sent"] > sent + 20
                        and s["store"]["last_seq"] > committed_1 + 100  # new data after the restart
                        and not s["store"]["evicting"]
                    ),
                    "every component recovered",
                )
                dropped_2 = drops(final)
                assert dropped_2 == {}, dropped_2  # (nothing held from before the kill was evicted)
                assert final["uplink"]["influxdb"]["rejected"] == 0
                assert final["uplink"]["influxdb"]["unencodable"] == 0
            except BaseException:
                gw.proc.kill()
                await gw.proc.wait()
                raise
            assert await gw.stop() == 0
        finally:
            await proxy.stop()

        got = await upstream(vm)
        # every record held in the journal at the kill is upstream, once per key
        for r in held:
            assert key(r) in got[r.kind], (r.kind, r.seq, key(r))
        # and every record ever committed is upstream, except those counted as evicted
        rows, bulk_cur, prio_cur = journal_rows(journal)
        assert {r.kind for r in rows} <= set(METRIC)
        unsent = sum(
            1 for r in rows if r.seq > (prio_cur if r.kind in PRIORITY_KINDS else bulk_cur)
        )
        total = sequence(journal)
        evicted = sum(dropped_1.values())
        # (a batch in flight at the stop may have arrived without its acknowledgement being
        # recorded: it counts as unsent and is sent again next run, overwriting itself)
        upstream_n = sum(len(v) for v in got.values())
        assert total - evicted - unsent <= upstream_n <= total - evicted
        # m1's alert, raised once (the restart carried it over), and both sensor events
        assert len(got["alert"]) == 1
        assert len(got["sensor"]) >= 2
        # and the gateway journaled data from after the restart too
        assert total > committed_1
        print(
            f"\nkill -9 at seq {committed_1}: {len(held)} records held, "
            f"{evicted} evicted by the budget ({dropped_1}); {total} committed in all, "
            f"{upstream_n} upstream, {unsent} left for the next run"
        )
