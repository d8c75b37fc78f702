"""Configuration schema of the gateway's OPC UA server (``[opcua_server]``).

Security: endpoints are offered for each of ``security_modes`` (Basic256Sha256 for Sign and
SignAndEncrypt). Clients log in with a user name and password (``users``, passwords stored as
hashes made by ``pdm-gateway opcua hash-password``), with an X.509 user certificate listed in
``certificate_users``, or anonymously when ``allow_anonymous``. Roles: ``read`` (HMI: browse,
read, subscribe) and ``operator`` (also acknowledges alerts and promotes/rolls back models).
Client application certificates are checked against the trust list in ``<state_dir>/pki``
(``pdm-gateway opcua trust|untrust|list``) when ``trust_clients`` is ``"pki"``; the server's own
certificate is created there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import StrictModel

SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
Role = Literal["read", "operator"]
_DEFAULT_MODE: SecurityMode = "SignAndEncrypt"


class UserEntry(StrictModel):
    #: ``scrypt$n$r$p$salt$hash`` (base64), from ``pdm-gateway opcua hash-password``
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
    role: Role = "read"


class CertificateUser(StrictModel):
    """A user authenticated by an X.509 user-identity certificate (PEM or DER file)."""

    certificate: Path
    role: Role = "read"


class OpcUaServerConfig(StrictModel):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(4840, ge=1, le=65535)
    namespace_uri: str = "urn:pdm-gateway:assets"
    security_modes: list[SecurityMode] = Field(
        default_factory=lambda: [_DEFAULT_MODE], min_length=1
    )
    allow_anonymous: bool = False
    #: role of anonymous clients (when allowed)
    anonymous_role: Role = "read"
    users: dict[str, UserEntry] = Field(default_factory=dict)
    certificate_users: dict[str, CertificateUser] = Field(default_factory=dict)
    #: ``pki``: client certificates must be in the trust list (``pdm-gateway opcua trust``);
    #: ``any``: any client certificate is accepted (tests, closed networks)
    trust_clients: Literal["pki", "any"] = "pki"
    #: a channel (or an asset's score) with no update for this long is Bad (stale)
    stale_after_s: float = Field(10.0, gt=0, le=3600)
    #: EURange of features, by feature name: ``[low, high]`` (default ``[0, 0]``: not known)
    feature_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled and not (self.allow_anonymous or self.users or self.certificate_users):
            raise ValueError(
                "no client could log in: set users, certificate_users or allow_anonymous"
            )
        for name, (lo, hi) in self.feature_ranges.items():
            if lo > hi:
                raise ValueError(f"feature_ranges.{name}: low above high")
        return self
