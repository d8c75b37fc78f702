"""Secured OPC UA: the collector against a plain asyncua server with certificates from a
``Pki``, a user manager, and only secured endpoints. The collector's clock is fake: a refusal
must wait ``reconnect.max_s`` (asserted on the clock), and the next attempt happens only when
the test advances it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole

from gateway import cli
from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.collectors.opcua.config import OpcUaDevice
from gateway.config.plant import Channel
from gateway.core.clock import FakeClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.demo import free_port
from gateway.opcua_pki import Pki
from gateway.runtime.queues import BoundedQueue

GUARD_S = 60.0
NS = "urn:test:plc"
MAX_S = 30.0
OURS = "gateway.collectors.opcua.collector"
CHANNELS = {"t1": Channel(kind="temperature")}
POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


class Users:
    """Accepts ``op``/``secret`` and the given user certificates; refuses anonymous access."""

    def __init__(self) -> None:
        self.certificates: set[bytes] = set()

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None:
            return User(role=UserRole.User) if (username, password) == ("op", "secret") else None
        if certificate is None:  # (a secured channel passes its client certificate here)
            return None
        der = certificate if isinstance(certificate, bytes) else None
        if der is None:
            der = uacrypto.der_from_x509(certificate)
        return User(role=UserRole.User) if der in self.certificates else None


class Plc:
    def __init__(self, root: Path) -> None:
        self.pki = Pki(root / "plc-pki")
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
        self.users = Users()
        self.server = Server(user_manager=self.users)  # type: ignore[arg-type]

    async def start(self) -> None:
        cert, key = self.pki.ensure_own_certificate(NS)
        await self.server.init()
        self.server.set_endpoint(self.url)
        await self.server.set_application_uri(NS)
        self.server.set_security_policy(POLICIES)
        await self.server.load_certificate(str(cert))
        await self.server.load_private_key(str(key))
        ns = await self.server.register_namespace(NS)
        await self.server.nodes.objects.add_variable(
            ua.NodeId("T1", ns), ua.QualifiedName("T1", ns), 21.5
        )
        await self.server.start()


@pytest.fixture
async def plc(tmp_path: Path) -> AsyncIterator[Plc]:
    p = Plc(tmp_path)
    await p.start()
    yield p
    await p.server.stop()


@contextlib.asynccontextmanager
async def collecting(
    plc: Plc, tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[OpcUaCollector, FakeClock, BoundedQueue[SampleBlock | Reading], Pki]]:
    cfg = OpcUaDevice.model_validate(
        {
            "endpoint": plc.url,
            "security_mode": "SignAndEncrypt",
            "security_policy": "Basic256Sha256",
            "username": "op",
            "password": "secret",
            "publishing_interval_ms": 20,
            "reconnect": {"initial_s": 1.0, "max_s": MAX_S},
            "nodes": [{"channel": "t1", "namespace_uri": NS, "node_id": "s=T1"}],
            **settings,
        }
    )
    pki = Pki(tmp_path / "gw-pki")
    clock = FakeClock()
    out: BoundedQueue[SampleBlock | Reading] = BoundedQueue("samples", 100)
    collector = OpcUaCollector(
        "plc", cfg, CHANNELS, out, clock, pki, application_uri="urn:test:gateway"
    )
    task = asyncio.create_task(collector.run())
    try:
        yield collector, clock, out, pki
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def first_reading(out: BoundedQueue[SampleBlock | Reading]) -> Reading:
    async with asyncio.timeout(GUARD_S):
        item = await out.get()
    assert isinstance(item, Reading)
    return item


def trust_server(plc: Plc, pki: Pki) -> None:
    pki.trust(plc.pki.own_cert)


async def test_untrusted_server_refused_until_trusted(
    plc: Plc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OURS)
    async with collecting(plc, tmp_path) as (collector, clock, out, pki):
        async with asyncio.timeout(GUARD_S):
            await collector.wait_state("refused")
            await clock.wait_for_sleepers(1)
        rejected = pki.rejected_dir / f"{pki.list()[0].thumbprint}.der"
        assert rejected.read_bytes() == plc.pki.own_cert.read_bytes()
        assert collector.last_error.endswith(f"run: pdm-gateway opcua trust {rejected}")
        assert clock.sleeps == [MAX_S]  # no retry storm: the next attempt waits max_s
        assert collector.counters.refusals == 1
        errors = [
            r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == OURS
        ]
        assert errors == [
            f"device plc refused ({plc.url}): the server certificate is not trusted "
            f"(stored as {rejected}); to trust it, run: pdm-gateway opcua trust {rejected}"
        ]
        # the operator runs the command printed in the message
        assert cli.main(["opcua", "trust", str(rejected), "--pki", str(pki.root)]) == 0
        clock.advance(MAX_S)
        reading = await first_reading(out)
        assert (reading.channel, reading.value, reading.quality) == ("t1", 21.5, Quality.GOOD)
        assert collector.state == "connected"
    assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_wrong_password_is_a_clear_error_not_a_retry_storm(
    plc: Plc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OURS)
    wrong = {"password": "not-the-password-7f3a"}
    async with collecting(plc, tmp_path, **wrong) as (collector, clock, _out, pki):
        trust_server(plc, pki)
        async with asyncio.timeout(GUARD_S):
            await collector.wait_state("refused")
            await clock.wait_for_sleepers(1)
        assert collector.last_error == "the server refused user 'op' (BadUserAccessDenied)"
        assert clock.sleeps == [MAX_S]
        collector.changed.clear()
        clock.advance(MAX_S)  # one more attempt, refused the same way: not logged again
        async with asyncio.timeout(GUARD_S):
            while collector.counters.refusals < 2:
                collector.changed.clear()
                await collector.changed.wait()
            await clock.wait_for_sleepers(1)
        assert clock.sleeps == [MAX_S, MAX_S]
        assert collector.counters.connects == 0
    errors = [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == OURS
    ]
    assert len(errors) == 1
    assert "refused user 'op'" in errors[0]
    assert "secret" not in caplog.text
    assert "not-the-password-7f3a" not in caplog.text


@pytest.mark.parametrize(
    ("mode", "policy"),
    [("Sign", "Aes128_Sha256_RsaOaep"), ("SignAndEncrypt", "Aes256_Sha256_RsaPss")],
)
async def test_other_policies_with_trust_on_first_use(
    plc: Plc, tmp_path: Path, mode: str, policy: str
) -> None:
    settings = {"security_mode": mode, "security_policy": policy, "trust_on_first_use": True}
    async with collecting(plc, tmp_path, **settings) as (collector, _clock, out, pki):
        reading = await first_reading(out)
        assert reading.value == 21.5
        assert [i.path.read_bytes() for i in pki.list() if i.trusted] == [
            plc.pki.own_cert.read_bytes()
        ]
        assert collector.counters.refusals == 0


async def test_certificate_authentication(plc: Plc, tmp_path: Path) -> None:
    user_cert, user_key = Pki(tmp_path / "user").ensure_own_certificate("urn:test:operator")
    plc.users.certificates.add(user_cert.read_bytes())
    settings = {
        "username": None,
        "password": None,
        "user_certificate": str(user_cert),
        "user_private_key": str(user_key),
    }
    async with collecting(plc, tmp_path, **settings) as (collector, _clock, out, pki):
        trust_server(plc, pki)
        reading = await first_reading(out)
        assert reading.value == 21.5
        assert collector.counters.refusals == 0


async def test_status_codes_arrive_as_quality(plc: Plc, tmp_path: Path) -> None:
    settings = {"trust_on_first_use": True, "queue_size": 10}  # three writes in a row
    async with collecting(plc, tmp_path, **settings) as (_c, _clock, out, _pki):
        assert (await first_reading(out)).quality == Quality.GOOD
        ns = await plc.server.get_namespace_index(NS)
        for value, code in (
            (22.5, ua.StatusCodes.UncertainLastUsableValue),
            (23.5, ua.StatusCodes.BadSensorFailure),
            (24.5, ua.StatusCodes.Good),
        ):
            dv = ua.DataValue(ua.Variant(value), ua.StatusCode(code))
            await plc.server.write_attribute_value(ua.NodeId("T1", ns), dv)
        got = [await first_reading(out) for _ in range(3)]
    assert [r.quality for r in got] == [Quality.UNCERTAIN, Quality.BAD, Quality.GOOD]
    assert got[0].value == 22.5  # marked, not dropped
    assert math.isnan(got[1].value)  # (the server sends no value with a Bad status)
    assert got[2].value == 24.5
