"""Who may do what on the OPC UA server: users (password or certificate) and their roles.

asyncua asks the ``UserManager`` for the ``User`` of each session; a ``None`` refuses the login.
Our roles map onto asyncua users by name; ``RolePermissions`` lets every logged-in role browse,
read and subscribe and only operators call methods (acknowledge, promote, rollback) or write.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyNone
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.opcua_server.config import OpcUaServerConfig, Role
from gateway.opcua_server.passwords import verify_password
from gateway.opcua_server.uatypes import ObjectIds, num_id

_WRITE_TYPES = {
    num_id(ObjectIds.CallRequest_Encoding_DefaultBinary),
    num_id(ObjectIds.WriteRequest_Encoding_DefaultBinary),
}
_READ_TYPES = {num_id(t) for t in USER_TYPES} - _WRITE_TYPES
ANONYMOUS = "anonymous"


class GatewayUsers:
    """Resolves a login to a ``User`` whose ``name`` carries our role (``role:name``)."""

    def __init__(self, cfg: OpcUaServerConfig, certificates: dict[bytes, tuple[str, Role]]) -> None:
        self.cfg, self.certificates = cfg, certificates
        self.refused = 0

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not certificate and "None" not in self.cfg.security_modes:
            # no channel certificate (nor a user certificate): a channel without security,
            # which this server does not offer (see ``DiscoveryOnlyNone``)
            self.refused += 1
            return None
        if username is not None:
            entry = self.cfg.users.get(username)
            if entry is not None and verify_password(password or "", entry.password_hash):
                return User(role=UserRole.User, name=f"{entry.role}:{username}")
            self.refused += 1
            return None
        # asyncua passes the user-token certificate for X.509 logins and the secure channel's
        # client certificate otherwise, so an unknown certificate is not a refusal by itself
        if certificate:
            der = (
                certificate
                if isinstance(certificate, bytes)
                else certificate.public_bytes(serialization.Encoding.DER)
            )
            hit = self.certificates.get(der)
            if hit is not None:
                return User(role=UserRole.User, name=f"{hit[1]}:{hit[0]}")
        if self.cfg.allow_anonymous:
            return User(role=UserRole.User, name=f"{self.cfg.anonymous_role}:{ANONYMOUS}")
        self.refused += 1
        return None


def role_of(user: User | None) -> Role | None:
    """Our role of an asyncua user (``None``: not one of ours)."""
    if user is None or user.name is None or ":" not in user.name:
        return None
    role = user.name.split(":", 1)[0]
    return "operator" if role == "operator" else "read" if role == "read" else None


class RolePermissions(PermissionRuleset):
    """read: browse, read, subscribe; operator: also call methods and write. The server's own
    internal session (an asyncua admin) keeps every right."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if user.role == UserRole.Admin:
            return True
        role = role_of(user)
        if role is None:
            return False
        if action_type_id in _READ_TYPES:
            return True
        return role == "operator" and action_type_id in _WRITE_TYPES


def load_certificate_der(data: bytes) -> bytes:
    """DER bytes of a PEM or DER certificate."""
    if data.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(data)
    else:
        cert = x509.load_der_x509_certificate(data)
    return cert.public_bytes(serialization.Encoding.DER)


class _DenyAll(PermissionRuleset):
    """No service of a session is allowed (discovery needs no session)."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        return False


class DiscoveryOnlyNone:
    """A security policy factory for the None policy on a server that does not offer it.

    OPC UA clients discover a server's endpoints over a None channel, so such a channel still
    opens; but asyncua would give it a default None policy with no permission rules, on which a
    client that asks for no security anyway (ignoring the endpoints) gets a session with every
    right and no trust check. The channel this factory makes allows discovery only: the login
    is refused (``GatewayUsers``) and every service of a session denied."""

    URI = SecurityPolicyNone.URI

    def matches(self, uri: str, mode: ua.MessageSecurityMode | None = None) -> bool:
        return uri == self.URI

    def create(self, peer_certificate: bytes | None) -> SecurityPolicyNone:
        return SecurityPolicyNone(permission_ruleset=_DenyAll())  # type: ignore[no-untyped-call]
