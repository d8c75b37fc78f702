"""Escalation to a real HTTPS endpoint (aiohttp, self-signed certificate) on 127.0.0.1: every
snapshot of an escalating asset arrives once by id across an outage and a throttled answer,
the verdict is journaled with its alert id and shows on the asset's OPC UA ``LastVerdict`` tag;
no snapshot of a non-escalating asset ever reaches the endpoint; a restart re-sends nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from asyncua import Client

from gateway.config.plant import Asset, Channel
from gateway.core.clock import FakeClock
from gateway.demo import free_port
from gateway.dsp.config import DspConfig
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.escalation import Escalator
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.opcua_server.layout import layout_from_config
from gateway.opcua_server.server import GatewayOpcUaServer
from gateway.store.access import JournalAccess
from gateway.store.journal import Journal, Row
from tests.uplink.certs import self_signed

T0 = 1_700_000_000_000_000_000
NS = "urn:test:pdm"
ASSETS = {"m1": Asset(channels=["m1_vib"]), "m2": Asset(channels=["m2_vib"])}
CHANNELS = {
    "m1_vib": Channel(kind="vibration", sample_rate_hz=5120),
    "m2_vib": Channel(kind="vibration", sample_rate_hz=5120),
}


class Endpoint:
    """An HTTPS analysis service: records every request; ``mode`` "ok" answers a verdict,
    "throttle" answers 503 with Retry-After 7."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/analyse"
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.mode = "ok"
        self.received: list[tuple[str, dict[str, object], str]] = []  # (key, body, auth)
        self.accepted: dict[str, dict[str, object]] = {}
        self.throttled = 0
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        self.received.append((key, body, request.headers.get("Authorization", "")))
        self.changed.set()
        if self.mode == "throttle":
            self.throttled += 1
            return web.Response(status=503, headers={"Retry-After": "7"})
        self.accepted.setdefault(key, body)
        return web.json_response({"verdict": f"outer race fault ({key})", "confidence": 0.9})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/analyse", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def snapshot(i: int, asset: str) -> Row:
    return Row(
        kind="snapshot",
        ts_ns=T0 + i * 10**9,
        asset=asset,
        channel="",
        model_version="1.2.0",
        payload={
            "snapshot_id": f"{asset}-alert-{i}",
            "trigger": "alert",
            "alert_id": f"a{i}",
            "score": 0.9,
            "channels": {"v": {"dtype": "int16", "data": "eJwDAAAAAAE=", "scale": 1.0}},
        },
    )


def feature(i: int) -> Row:
    return Row("feature", T0 + i * 10**9, "m1", "m1_vib", {"features": {"rms": 1.0}})


@pytest.fixture
async def opcua(tmp_path: Path) -> AsyncIterator[GatewayOpcUaServer]:
    cfg = OpcUaServerConfig(
        enabled=True,
        port=free_port(),
        namespace_uri=NS,
        security_modes=["None"],
        allow_anonymous=True,
        anonymous_role="operator",
    )
    layout = layout_from_config(ASSETS, CHANNELS, DspConfig(window=1024, hop=512))
    server = GatewayOpcUaServer(cfg, layout, FakeClock(), tmp_path)
    async with asyncio.timeout(60):
        await server.start()
    yield server
    await server.stop()


async def until(cond: object, event: asyncio.Event) -> None:
    async with asyncio.timeout(30):  # a hang guard
        while not cond():  # type: ignore[operator]
            event.clear()
            await event.wait()


async def test_snapshots_escalated_once_across_an_outage_with_verdicts_on_opcua(
    tmp_path: Path, opcua: GatewayOpcUaServer
) -> None:
    cert, key = self_signed(tmp_path)
    endpoint = Endpoint(cert, key)
    fwd = ForwardingConfig.model_validate(
        {
            "assets": {"m1": {"escalate": True}},  # m2: the default, not escalated
            "escalation": {
                "url": endpoint.url,
                "token": "s3cr3t",
                "ca_file": str(cert),
                "timeout_s": 5.0,
                "backoff": {"initial_s": 0.5, "max_s": 2.0},
            },
        }
    )
    assert fwd.escalation is not None
    journal = Journal(tmp_path / "journal.sqlite", sinks=["escalation"])
    access = JournalAccess(journal)
    clock = FakeClock(T0, auto_advance=True)
    rows = [r for i in range(6) for r in (feature(i), snapshot(i, "m1" if i % 2 else "m2"))]
    await access.call(journal.append, rows)

    def start() -> tuple[Escalator, asyncio.Task[None]]:
        assert fwd.escalation is not None
        esc = Escalator(fwd.escalation, fwd, access, clock, rand=lambda: 0.5)
        esc.listeners.append(opcua)
        return esc, asyncio.create_task(esc.run())

    esc, task = start()
    try:
        # the endpoint is down (nothing listens): the first snapshot waits, retried
        await until(lambda: esc.retries >= 3, esc.changed)
        assert esc.state == "down"
        assert esc.sent == 0
        # it comes back, but throttles first: the server's Retry-After is honoured
        endpoint.mode = "throttle"
        await endpoint.start()
        await until(lambda: endpoint.throttled >= 1, endpoint.changed)
        endpoint.mode = "ok"
        await asyncio.wait_for(esc.drained(), 30)
        assert 7.0 in clock.sleeps
        # more snapshots later, while running
        await access.call(journal.append, [snapshot(7, "m1"), snapshot(8, "m2")])
        access.notify_appended()
        await until(lambda: esc.sent == 4, esc.changed)
        await asyncio.wait_for(esc.drained(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    want = {"m1-alert-1", "m1-alert-3", "m1-alert-5", "m1-alert-7"}
    assert set(endpoint.accepted) == want
    ok = [k for k, _, _ in endpoint.received if k in endpoint.accepted]
    assert len(ok) == len(want) + endpoint.throttled  # once each, plus the 503 answered
    assert all(b["asset"] == "m1" for _, b, _ in endpoint.received)  # privacy: never m2
    assert {auth for _, _, auth in endpoint.received} == {"Bearer s3cr3t"}
    body = endpoint.accepted["m1-alert-3"]
    assert body["alert_id"] == "a3"
    assert body["channels"] == {"v": {"dtype": "int16", "data": "eJwDAAAAAAE=", "scale": 1.0}}
    sent_bytes = sum(
        len(json.dumps(b, separators=(",", ":")).encode()) for b in endpoint.accepted.values()
    )
    assert esc.escalated_bytes == {"m1": sent_bytes}

    # verdicts: journaled with their alert ids, and the latest on the OPC UA tag
    verdicts = [r for r in await access.call(journal.read, "check", 1000) if r.kind == "verdict"]
    assert sorted(str(r.payload["alert_id"]) for r in verdicts) == ["a1", "a3", "a5", "a7"]
    assert all(r.payload["confidence"] == 0.9 for r in verdicts)
    client = Client(opcua.url)
    async with asyncio.timeout(60):
        await client.connect()
    try:
        ns = await client.get_namespace_index(NS)
        node = client.get_node(f"ns={ns};s=Assets.m1.LastVerdict")
        assert await node.read_value() == "outer race fault (m1-alert-7)"
        other = client.get_node(f"ns={ns};s=Assets.m2.LastVerdict")
        assert await other.read_value() == ""
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()

    # a restart keeps the cursor: nothing is sent again
    n = len(endpoint.received)
    esc, task = start()
    try:
        await asyncio.wait_for(esc.drained(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(endpoint.received) == n
    await endpoint.stop()
    access.close()
