"""Security of the gateway's OPC UA server with a real asyncua client: Basic256Sha256 Sign and
SignAndEncrypt, hashed passwords, certificate users, the client trust list, roles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaError

from gateway.alerts.config import AlertsConfig
from gateway.alerts.stage import AlertStage, Record, Scored
from gateway.cli import main
from gateway.config.plant import Asset, Channel
from gateway.core.clock import FakeClock
from gateway.core.records import AlertEvent, AlertState, Score
from gateway.demo import free_port
from gateway.dsp.config import DspConfig
from gateway.opcua_pki import Pki
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.opcua_server.layout import layout_from_config
from gateway.opcua_server.passwords import hash_password, verify_password
from gateway.opcua_server.server import GatewayOpcUaServer
from gateway.runtime.queues import BoundedQueue

GUARD_S = 60.0
CLIENT_URI = "urn:test:scada"
ASSETS = {"m1": Asset(channels=["m1_temp"])}
CHANNELS = {"m1_temp": Channel(kind="temperature")}
ALERTS = AlertsConfig.model_validate(
    {
        "rules": {
            "anomaly": {"asset": "m1", "raise_level": 0.8, "clear_level": 0.5, "on_n": 1, "on_m": 1}
        }
    }
)
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


@dataclass
class Secured:
    server: GatewayOpcUaServer
    stage: AlertStage
    inp: BoundedQueue[Scored]
    out: BoundedQueue[Record]
    clock: FakeClock
    client_pki: Pki
    user_pki: Pki


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    user_pki = Pki(tmp_path / "user")
    user_cert, _ = user_pki.ensure_own_certificate("urn:test:user-cert")
    cfg = OpcUaServerConfig(
        enabled=True,
        port=free_port(),
        security_modes=["Sign", "SignAndEncrypt"],
        users={
            "hmi": {"password_hash": hash_password("hmi-pass", n=2**10), "role": "read"},
            "op": {"password_hash": hash_password("op-pass", n=2**10), "role": "operator"},
        },
        certificate_users={"cert-op": {"certificate": user_cert, "role": "operator"}},
    )
    clock = FakeClock()
    layout = layout_from_config(ASSETS, CHANNELS, DspConfig())
    server = GatewayOpcUaServer(cfg, layout, clock, tmp_path / "state")
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 100)
    out: BoundedQueue[Record] = BoundedQueue("records", 100)
    stage = AlertStage(ALERTS, ASSETS, inp, out, clock)
    stage.publishers.append(server)
    server.acknowledger = stage
    async with asyncio.timeout(GUARD_S):
        await server.start()
    task = asyncio.create_task(stage.run())
    client_pki = Pki(tmp_path / "client")
    cert, _ = client_pki.ensure_own_certificate(CLIENT_URI)
    server.pki.trust(cert)
    yield Secured(server, stage, inp, out, clock, client_pki, user_pki)
    await inp.close()
    await task
    await server.stop()


@contextlib.asynccontextmanager
async def session(
    s: Secured,
    user: str | None = None,
    password: str | None = None,
    mode: str = "SignAndEncrypt",
    pki: Pki | None = None,
    user_cert: bool = False,
) -> AsyncIterator[Client]:
    pki = pki or s.client_pki
    cert, key = pki.ensure_own_certificate(CLIENT_URI)
    client = Client(s.server.url)
    client.application_uri = CLIENT_URI
    await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), mode=MODES[mode])
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    if user_cert:
        await client.load_client_certificate(str(s.user_pki.own_cert))
        await client.load_private_key(str(s.user_pki.own_key))
    async with asyncio.timeout(GUARD_S):
        await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()


async def raise_alert(s: Secured) -> str:
    await s.inp.put(Score("m1", s.clock.now_ns(), "iforest", "1", 0.9, 0.8))
    while True:
        rec = await s.out.get()
        if isinstance(rec, AlertEvent):
            return rec.alert_id


def test_password_hashes() -> None:
    h = hash_password("s3cret", n=2**10)
    assert h.startswith("scrypt$1024$8$1$")
    assert verify_password("s3cret", h)
    assert not verify_password("s3cret ", h)
    assert not verify_password("s3cret", "scrypt$broken")
    assert hash_password("s3cret", n=2**10) != h  # salted


async def test_anonymous_and_wrong_password_are_refused(secured: Secured) -> None:
    endpoints = await Client(secured.server.url).connect_and_get_server_endpoints()
    modes = {e.SecurityMode for e in endpoints}
    assert modes == {ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt}
    assert {e.SecurityPolicyUri for e in endpoints} == {SecurityPolicyBasic256Sha256.URI}
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert ua.UserTokenType.Anonymous not in tokens

    with pytest.raises(UaError):
        async with session(secured):
            pass
    with pytest.raises(UaError):
        async with session(secured, "op", "wrong"):
            pass
    with pytest.raises(UaError):
        async with session(secured, "nobody", "op-pass"):
            pass
    assert secured.server.users.refused == 2


async def test_a_channel_without_security_is_refused_when_none_is_offered(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that ignores the offered endpoints and opens a None channel (no certificate,
    plain-text password) gets no session, so neither the trust list nor the roles can be
    bypassed that way."""
    alert_id = await raise_alert(secured)
    endpoints = await Client(secured.server.url).connect_and_get_server_endpoints()
    assert ua.MessageSecurityMode.None_ not in {e.SecurityMode for e in endpoints}
    # a client that takes the encrypted endpoint (its password token policy is the channel's:
    # the password goes as it is) but asks for no security anyway
    encrypted = next(e for e in endpoints if e.SecurityMode == MODES["SignAndEncrypt"])
    monkeypatch.setattr(Client, "find_endpoint", staticmethod(lambda eps, mode, uri: encrypted))
    for user, password in (("hmi", "hmi-pass"), ("op", "op-pass"), (None, None)):
        client = Client(secured.server.url)
        if user is not None:
            client.set_user(user)
            client.set_password(password or "")
        with pytest.raises((UaError, ConnectionError, TimeoutError)):
            async with asyncio.timeout(GUARD_S):
                await client.connect()
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()
    # nothing was acknowledged; the offered security still works
    async with session(secured, "op", "op-pass") as client:
        ids = client.get_node(secured.server.node_id("Assets.m1.ActiveAlertIds"))
        assert await ids.read_value() == [alert_id]
    assert len(secured.out) == 0


async def test_read_only_user_cannot_acknowledge_an_operator_can(secured: Secured) -> None:
    alert_id = await raise_alert(secured)
    ack = secured.server.node_id("Assets.Acknowledge")
    assets = secured.server.node_id("Assets")
    async with session(secured, "hmi", "hmi-pass", mode="Sign") as client:
        ids = client.get_node(secured.server.node_id("Assets.m1.ActiveAlertIds"))
        assert await ids.read_value() == [alert_id]
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.get_node(assets).call_method(ack, alert_id)
    assert len(secured.out) == 0  # nothing was acknowledged
    async with session(secured, "op", "op-pass") as client:
        await client.get_node(assets).call_method(ack, alert_id)
    rec = await secured.out.get()
    assert isinstance(rec, AlertEvent)
    assert (rec.alert_id, rec.state) == (alert_id, AlertState.ACKNOWLEDGED)


async def test_certificate_user_logs_in_as_operator(secured: Secured) -> None:
    alert_id = await raise_alert(secured)
    async with session(secured, user_cert=True) as client:
        await client.get_node(secured.server.node_id("Assets")).call_method(
            secured.server.node_id("Assets.Acknowledge"), alert_id
        )
    rec = await secured.out.get()
    assert isinstance(rec, AlertEvent)
    assert rec.state == AlertState.ACKNOWLEDGED


async def test_untrusted_client_refused_until_trusted_on_the_command_line(
    secured: Secured, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = Pki(tmp_path / "stranger")
    with pytest.raises(UaError):
        async with session(secured, "hmi", "hmi-pass", pki=stranger):
            pass
    root = str(secured.server.pki.root)
    assert main(["opcua", "list", "--pki", root]) == 0
    listed = capsys.readouterr().out
    rejected = [line for line in listed.splitlines() if line.startswith("rejected")]
    assert len(rejected) == 1
    path = rejected[0].split()[-1]
    assert main(["opcua", "trust", "--pki", root, path]) == 0
    async with session(secured, "hmi", "hmi-pass", pki=stranger) as client:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running


def test_hash_password_command_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("op-secret\n"))
    assert main(["opcua", "hash-password"]) == 0
    out = capsys.readouterr().out.strip()
    assert verify_password("op-secret", out)
    assert "op-secret" not in out
    OpcUaServerConfig(users={"op": {"password_hash": out, "role": "operator"}})  # accepted
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["opcua", "hash-password"]) == 1
