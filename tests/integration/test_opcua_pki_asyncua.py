"""The PKI's validator in a real asyncua client and server on loopback (SignAndEncrypt)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import Client, Server, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaError

from gateway.demo import free_port
from gateway.opcua_pki import Pki, thumbprint

GUARD_S = 60.0
SERVER_URI = "urn:test:plc"
CLIENT_URI = "urn:test:pdm-gateway"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[str, Pki]]:
    """A SignAndEncrypt-only server whose certificates and trust store are a ``Pki``."""
    pki = Pki(tmp_path / "server-pki")
    cert, key = pki.ensure_own_certificate(SERVER_URI)
    url = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    server.set_certificate_validator(pki.validator())
    await server.start()
    yield url, pki
    await server.stop()


async def connect(url: str, pki: Pki) -> Client:
    cert, key = pki.ensure_own_certificate(CLIENT_URI)
    client = Client(url)
    client.application_uri = CLIENT_URI
    client.certificate_validator = pki.validator()
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    async with asyncio.timeout(GUARD_S):
        await client.connect()
    return client


async def test_both_sides_refuse_until_each_trusts_the_other(
    secured: tuple[str, Pki], tmp_path: Path
) -> None:
    url, server_pki = secured
    client_pki = Pki(tmp_path / "client-pki")
    # the server validates the client's certificate first (CreateSession request) ...
    with pytest.raises(UaError):
        await connect(url, client_pki)
    [seen] = [i for i in server_pki.list() if not i.trusted]
    assert seen.path.read_bytes() == client_pki.own_cert.read_bytes()
    server_pki.trust(seen.path)

    # ... then the client the server's (CreateSession response)
    with pytest.raises(UaError):
        await connect(url, client_pki)
    [rejected] = [i for i in client_pki.list() if not i.trusted]
    assert rejected.thumbprint == thumbprint(server_pki.own_cert.read_bytes())
    client_pki.trust(rejected.path)

    client = await connect(url, client_pki)
    try:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running
    finally:
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()
