"""The gateway's OPC UA application certificate and its on-disk trust store of peer certificates.

Shared by the OPC UA client (collectors) and the OPC UA server. Layout under ``root`` (usually
``<gateway.state_dir>/pki``)::

    own/cert.der            this gateway's application certificate (DER, self-signed)
    own/key.pem             its RSA 2048 private key (PEM, PKCS#8, unencrypted, mode 0600)
    trusted/certs/*.der     peer certificates trusted by the operator, named <sha1>.der
    rejected/certs/*.der    unknown peer certificates seen and refused, named <sha1>.der

A peer certificate is trusted when its exact DER bytes are in ``trusted/certs`` (pinning), or
when it is signed by a CA certificate that is. The operator trusts a refused peer with
``pdm-gateway opcua trust <rejected/certs/<sha1>.der>``. Every method is synchronous, small file
I/O; none holds state between calls except the directory itself, so several processes (the CLI
and a running gateway) may share one root.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

#: validity of a newly created own certificate
OWN_CERT_DAYS = 5 * 365
#: how far before expiry ``ensure_own_certificate`` renews the own certificate
RENEW_BEFORE = dt.timedelta(days=14)


class PkiError(Exception):
    """A certificate file cannot be read, or a reference names no certificate."""


@dataclass(frozen=True)
class CertInfo:
    """One certificate of the store, as ``list`` reports it."""

    subject: str
    thumbprint: str  # sha1 of the DER bytes, lowercase hex
    not_after: dt.datetime  # UTC
    path: Path
    trusted: bool
    application_uri: str = ""  # first URI of the subject alternative names, or ""


def thumbprint(der: bytes) -> str:
    """The sha1 thumbprint of a DER certificate, lowercase hex (OPC UA's certificate id)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def application_uris(cert: x509.Certificate) -> list[str]:
    """The URI subject alternative names of a certificate (OPC UA application URIs)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def application_uri_of(cert: x509.Certificate) -> str:
    """The first URI subject alternative name (an OPC UA application URI), or ``""``."""
    uris = application_uris(cert)
    return uris[0] if uris else ""


def default_application_uri(gateway_name: str, hostname: str | None = None) -> str:
    """The application URI of a gateway: ``urn:<hostname>:pdm-gateway:<gateway_name>``."""
    return f"urn:{hostname or socket.gethostname()}:pdm-gateway:{gateway_name}"


def load_cert_bytes(data: bytes) -> x509.Certificate:
    """Parse a DER or PEM certificate; ``PkiError`` if it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"not a DER or PEM X.509 certificate: {exc}") from exc


def _info(cert: x509.Certificate, der: bytes, path: Path, trusted: bool) -> CertInfo:
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        thumbprint=thumbprint(der),
        not_after=cert.not_valid_after_utc,
        path=path,
        trusted=trusted,
        application_uri=application_uri_of(cert),
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` (a CA) signed ``cert``."""
    if cert.issuer != issuer.subject:
        return False
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    key = issuer.public_key()
    algo = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        else:
            return False
    except InvalidSignature:
        return False
    return True


class Pki:
    """The gateway's own certificate and its trust store under ``root`` (see module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.own_cert = self.root / "own" / "cert.der"
        self.own_key = self.root / "own" / "key.pem"
        self.trusted_dir = self.root / "trusted" / "certs"
        self.rejected_dir = self.root / "rejected" / "certs"

    # -- own certificate ------------------------------------------------------------------
    def ensure_own_certificate(
        self, application_uri: str, hostname: str = "localhost"
    ) -> tuple[Path, Path]:
        """Create the own key and self-signed certificate if absent; return ``(cert, key)``.

        The certificate (RSA 2048, SHA-256, valid ``OWN_CERT_DAYS``) names ``application_uri``
        as URI and ``hostname`` plus this machine's host name as DNS subject alternative
        names, and allows client and server authentication. An existing key is kept; the
        certificate is re-created (with a warning: peers must trust the new one) when it names
        another application URI or expires within ``RENEW_BEFORE``. The key file is mode 0600.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.own_cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.own_key.is_file():
            key = serialization.load_pem_private_key(self.own_key.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise PkiError(f"{self.own_key}: not an RSA private key")
            os.chmod(self.own_key, 0o600)
        else:
            key = cert_gen.generate_private_key()
            _write_private(self.own_key, cert_gen.dump_private_key_as_pem(key))
            if self.own_cert.exists():
                self.own_cert.unlink()  # a certificate for another key is useless
        if self.own_cert.is_file():
            cert = load_cert_bytes(self.own_cert.read_bytes())
            reason = ""
            if application_uri_of(cert) != application_uri:
                reason = f"it names {application_uri_of(cert)!r}, not {application_uri!r}"
            elif cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.UTC):
                reason = f"it expires {cert.not_valid_after_utc:%Y-%m-%d}"
            if not reason:
                return self.own_cert, self.own_key
            log.warning(
                "renewing the OPC UA application certificate %s (%s): peers must trust the new one",
                self.own_cert,
                reason,
            )
        names = [x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)]
        if socket.gethostname() != hostname:
            names.append(x509.DNSName(socket.gethostname()))
        cert = cert_gen.generate_self_signed_app_certificate(
            key,
            f"pdm-gateway@{hostname}",
            {},
            names,
            extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
            days=OWN_CERT_DAYS,
        )
        _write_atomic(self.own_cert, cert.public_bytes(serialization.Encoding.DER))
        log.info(
            "created the OPC UA application certificate %s for %s", self.own_cert, application_uri
        )
        return self.own_cert, self.own_key

    # -- trust store ------------------------------------------------------------------------
    def trust(self, cert_file: Path) -> Path:
        """Copy a DER or PEM certificate into ``trusted/certs`` as ``<sha1>.der`` (removing it
        from ``rejected/certs``); return the trusted file's path. ``PkiError`` if unreadable."""
        try:
            data = Path(cert_file).read_bytes()
        except OSError as exc:
            raise PkiError(f"cannot read {cert_file}: {exc.strerror or exc}") from exc
        der = load_cert_bytes(data).public_bytes(serialization.Encoding.DER)
        return self._trust_der(der)

    def _trust_der(self, der: bytes) -> Path:
        name = f"{thumbprint(der)}.der"
        path = self.trusted_dir / name
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _write_atomic(path, der)
        (self.rejected_dir / name).unlink(missing_ok=True)
        return path

    def untrust(self, ref: str) -> Path:
        """Remove a trusted certificate named by sha1 thumbprint (hex, any case, ``:`` allowed)
        or by file name; return the removed path. ``PkiError`` if none or several match."""
        key = ref.strip().lower().replace(":", "")
        matches = [
            p
            for p in self._files(self.trusted_dir)
            if p.name == ref or p.stem.lower() == key or self._thumb(p) == key
        ]
        if not matches:
            raise PkiError(f"no trusted certificate matches {ref!r} (see 'pdm-gateway opcua list')")
        if len(matches) > 1:
            raise PkiError(f"{ref!r} matches {len(matches)} trusted certificates: be more specific")
        matches[0].unlink()
        return matches[0]

    def reject(self, der: bytes) -> Path:
        """Store an unknown peer certificate as ``rejected/certs/<sha1>.der``; return its path."""
        path = self.rejected_dir / f"{thumbprint(der)}.der"
        if not path.exists():
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, der)
        return path

    def list(self) -> builtins.list[CertInfo]:
        """Trusted then rejected certificates, each sorted by subject. Unreadable files are
        skipped with a warning."""
        out: builtins.list[CertInfo] = []
        for directory, trusted in ((self.trusted_dir, True), (self.rejected_dir, False)):
            infos = []
            for p in self._files(directory):
                try:
                    data = p.read_bytes()
                    cert = load_cert_bytes(data)
                except (OSError, PkiError) as exc:
                    log.warning("skipping %s: %s", p, exc)
                    continue
                infos.append(_info(cert, cert.public_bytes(serialization.Encoding.DER), p, trusted))
            out += sorted(infos, key=lambda i: (i.subject, i.thumbprint))
        return out

    def trusted_certificates(self) -> builtins.list[x509.Certificate]:
        """Every readable certificate in ``trusted/certs``."""
        certs = []
        for p in self._files(self.trusted_dir):
            try:
                certs.append(load_cert_bytes(p.read_bytes()))
            except (OSError, PkiError) as exc:
                log.warning("skipping %s: %s", p, exc)
        return certs

    def is_trusted(self, der: bytes) -> bool:
        """Whether the DER certificate is trusted: pinned by its bytes, or signed by a trusted
        CA certificate. Validity dates are not checked here (``validator`` does)."""
        if (self.trusted_dir / f"{thumbprint(der)}.der").is_file():
            return True
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return False
        trusted = self.trusted_certificates()
        if any(c.public_bytes(serialization.Encoding.DER) == der for c in trusted):
            return True
        return any(_signed_by(cert, ca) for ca in trusted)

    def validator(self, *, trust_on_first_use: bool = False) -> PkiValidator:
        """A certificate validator for asyncua (``Client.certificate_validator`` or
        ``Server.set_certificate_validator``) backed by this store."""
        return PkiValidator(self, trust_on_first_use=trust_on_first_use)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _files(directory: Path) -> builtins.list[Path]:
        if not directory.is_dir():
            return []
        return sorted(
            p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in (".der", ".pem")
        )

    @staticmethod
    def _thumb(path: Path) -> str:
        try:
            cert = load_cert_bytes(path.read_bytes())
        except (OSError, PkiError):
            return ""
        return thumbprint(cert.public_bytes(serialization.Encoding.DER))


class PkiValidator:
    """An asyncua ``CertificateValidatorMethod``: ``await v(cert, app_description)`` returns if
    the peer certificate is acceptable and raises asyncua's ``ServiceError`` otherwise.

    Order: an untrusted certificate is stored under ``rejected/`` (``last_rejected`` holds its
    path, for the caller's message) and refused with ``BadCertificateUntrusted``; with
    ``trust_on_first_use`` it is instead trusted (and logged) when no trusted certificate names
    the same application URI yet, so a *changed* certificate of a known peer is still refused.
    A trusted certificate must be within its validity dates (``BadCertificateTimeInvalid``) and
    name the peer's application URI (``BadCertificateUriInvalid``).
    """

    def __init__(self, pki: Pki, *, trust_on_first_use: bool = False) -> None:
        self.pki = pki
        self.trust_on_first_use = trust_on_first_use
        self.last_rejected: Path | None = None
        self.last_status: int | None = None

    async def __call__(
        self, cert: x509.Certificate, app_description: ua.ApplicationDescription
    ) -> None:
        try:
            self._check(cert, app_description)
        except ServiceError as exc:
            self.last_status = exc.code
            raise

    def _check(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        if not self.pki.is_trusted(der):
            uri = application_uri_of(cert)
            known = {application_uri_of(c) for c in self.pki.trusted_certificates()}
            if self.trust_on_first_use and uri and uri not in known:
                path = self.pki._trust_der(der)
                log.warning(
                    "trusted on first use: certificate %s of %s (%s)",
                    thumbprint(der),
                    uri,
                    path,
                )
            else:
                self.last_rejected = self.pki.reject(der)
                raise ServiceError(StatusCodes.BadCertificateUntrusted)
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ServiceError(StatusCodes.BadCertificateTimeInvalid)
        uri = app.ApplicationUri if app is not None else None
        if uri and uri not in application_uris(cert):
            raise ServiceError(StatusCodes.BadCertificateUriInvalid)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)
