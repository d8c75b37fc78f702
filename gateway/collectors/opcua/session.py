"""Open and close one asyncua client session for a device, with security and authentication,
and classify connection failures as transient (retry with backoff) or refused (fix needed).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from gateway.collectors.opcua.config import OpcUaDevice
from gateway.core.errors import PermanentError, TransientError
from gateway.opcua_pki import Pki, PkiValidator

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_CREDENTIALS = {
    StatusCodes.BadUserAccessDenied,
    StatusCodes.BadIdentityTokenInvalid,
    StatusCodes.BadIdentityTokenRejected,
    StatusCodes.BadUserSignatureInvalid,
}
_OUR_CERT_REFUSED = {
    StatusCodes.BadCertificateUntrusted,
    StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateUriInvalid,
    StatusCodes.BadCertificateTimeInvalid,
    StatusCodes.BadCertificateUseNotAllowed,
    StatusCodes.BadSecurityChecksFailed,
    StatusCodes.BadCertificateRevoked,
}
_SECURITY_CONFIG = {
    StatusCodes.BadSecurityPolicyRejected,
    StatusCodes.BadSecurityModeRejected,
}


class RefusedError(PermanentError):
    """The connection was refused for a reason that retrying alone cannot fix (an untrusted
    certificate, wrong credentials, no endpoint with the configured security)."""


class OpcUaSession:
    """One connection attempt's client. ``open()`` connects (``TransientError`` or
    ``RefusedError``); ``close()`` never raises and is bounded by the device's timeout."""

    def __init__(
        self, device_id: str, cfg: OpcUaDevice, pki: Pki | None, application_uri: str
    ) -> None:
        self.device_id, self.cfg, self.pki = device_id, cfg, pki
        self.application_uri = application_uri
        self.client = Client(
            cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.keepalive_s
        )
        self.client.application_uri = application_uri
        self.client.name = self.client.description = f"pdm-gateway {device_id}"
        self.client.session_timeout = round(cfg.session_timeout_s * 1000)
        self.validator: PkiValidator | None = None
        #: set when asyncua's watchdog sees the connection die
        self.lost = asyncio.Event()
        self.lost_reason = ""

    async def open(self) -> None:
        cfg = self.cfg
        try:
            async with asyncio.timeout(cfg.timeout_s * 3):
                await self._configure()
                self.client.connection_lost_callback = self._on_lost
                await self.client.connect()
        except (UaError, OSError, TimeoutError, ConnectionError) as exc:
            await self.close()
            raise self._classify(exc) from exc

    async def _on_lost(self, exc: Exception) -> None:
        self.lost_reason = f"connection lost ({type(exc).__name__}: {exc})".replace(": )", ")")
        self.lost.set()

    async def _configure(self) -> None:
        cfg, client = self.cfg, self.client
        if cfg.username is not None and cfg.password is not None:
            client.set_user(cfg.username)
            client.set_password(cfg.password.get_secret_value())
        if cfg.user_certificate is not None and cfg.user_private_key is not None:
            try:
                await client.load_client_certificate(str(cfg.user_certificate))
                await client.load_private_key(Path(cfg.user_private_key))
            except (OSError, ValueError) as exc:
                raise RefusedError(f"cannot load the user certificate or key: {exc}") from exc
        if cfg.security_mode == "None":
            return
        assert self.pki is not None
        cert, key = self.pki.ensure_own_certificate(self.application_uri)
        self.validator = self.pki.validator(trust_on_first_use=cfg.trust_on_first_use)
        client.certificate_validator = self.validator
        await client.set_security(
            POLICIES[cfg.security_policy], str(cert), str(key), mode=MODES[cfg.security_mode]
        )

    def _classify(self, exc: BaseException) -> TransientError | RefusedError:
        cfg = self.cfg
        code = exc.code if isinstance(exc, UaStatusCodeError) else None
        v = self.validator
        if v is not None and code is not None and v.last_status == code:
            if code == StatusCodes.BadCertificateUntrusted and v.last_rejected is not None:
                return RefusedError(
                    f"the server certificate is not trusted (stored as {v.last_rejected}); "
                    f"to trust it, run: pdm-gateway opcua trust {v.last_rejected}"
                )
            return RefusedError(f"the server certificate is invalid ({ua.StatusCode(code).name})")
        if code in _CREDENTIALS:
            who = f"user {cfg.username!r}" if cfg.username else "the user certificate"
            if cfg.username is None and cfg.user_certificate is None:
                who = "anonymous access"
            return RefusedError(f"the server refused {who} ({ua.StatusCode(code).name})")
        if code in _OUR_CERT_REFUSED and self.pki is not None:
            return RefusedError(
                f"the server refused the gateway's certificate ({ua.StatusCode(code).name}): "
                f"trust {self.pki.own_cert} on the server"
            )
        if code in _SECURITY_CONFIG or "No matching endpoints" in str(exc):
            return RefusedError(
                f"the server offers no endpoint with security {cfg.security_mode}/"
                f"{cfg.security_policy}"
            )
        if isinstance(exc, TimeoutError):
            return TransientError("no answer within the timeout")
        text = str(exc) or type(exc).__name__
        if code is not None:
            text = ua.StatusCode(code).name
        return TransientError(text)

    async def close(self) -> None:
        """Close the session and the socket; a dead connection is only torn down locally."""
        client = self.client
        client.connection_lost_callback = None
        with contextlib.suppress(UaError, OSError, TimeoutError, ConnectionError):
            async with asyncio.timeout(self.cfg.timeout_s):
                await client.close_session()
        with contextlib.suppress(UaError, OSError, TimeoutError, ConnectionError):
            async with asyncio.timeout(self.cfg.timeout_s):
                await client.close_secure_channel()
        client.disconnect_socket()
