"""The OPC UA PKI: own certificate, trust store on disk, the asyncua validator and the CLI."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway import cli
from gateway.opcua_pki import Pki, PkiError, application_uris, thumbprint

URI = "urn:test:pdm-gateway"


def make_cert(
    uri: str,
    *,
    days: int = 30,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    not_before: dt.datetime | None = None,
) -> tuple[bytes, rsa.RSAPrivateKey]:
    """A DER application certificate for ``uri``: self-signed, or signed by ``issuer``."""
    key = cert_gen.generate_private_key()
    if issuer is None:
        cert = cert_gen.generate_self_signed_app_certificate(
            key,
            uri,
            {},
            [x509.UniformResourceIdentifier(uri)],
            [ExtendedKeyUsageOID.SERVER_AUTH],
            days=days,
        )
        return cert.public_bytes(serialization.Encoding.DER), key
    ca, ca_key = issuer
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uri)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER), key


def make_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(key, "Plant CA", {}, [], [], days=30)
    return cert, key


def app(uri: str) -> ua.ApplicationDescription:
    d = ua.ApplicationDescription()
    d.ApplicationUri = uri
    return d


def test_own_certificate_created_once_with_private_key(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    cert_path, key_path = pki.ensure_own_certificate(URI, "gw.example")
    assert cert_path == tmp_path / "pki" / "own" / "cert.der"
    assert key_path == tmp_path / "pki" / "own" / "key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_der_x509_certificate(cert_path.read_bytes())
    assert application_uris(cert) == [URI]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gw.example" in san.get_values_for_type(x509.DNSName)
    pub = cert.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    assert pub.key_size == 2048
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == pub.public_numbers()  # type: ignore[union-attr]
    before = cert_path.read_bytes(), key_path.read_bytes()
    assert pki.ensure_own_certificate(URI, "gw.example") == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before  # nothing re-created


def test_own_certificate_renewed_for_another_uri_keeping_the_key(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert_path, key_path = pki.ensure_own_certificate(URI)
    key_before = key_path.read_bytes()
    pki.ensure_own_certificate("urn:other")
    assert application_uris(x509.load_der_x509_certificate(cert_path.read_bytes())) == ["urn:other"]
    assert key_path.read_bytes() == key_before


def test_trust_der_and_pem_named_by_thumbprint(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    der, _ = make_cert("urn:server:a")
    der_file = tmp_path / "a.der"
    der_file.write_bytes(der)
    pem_der, _ = make_cert("urn:server:b")
    pem_file = tmp_path / "b.pem"
    pem_file.write_bytes(
        x509.load_der_x509_certificate(pem_der).public_bytes(serialization.Encoding.PEM)
    )
    assert not pki.is_trusted(der)
    a = pki.trust(der_file)
    b = pki.trust(pem_file)
    assert a == pki.trusted_dir / f"{thumbprint(der)}.der"
    assert b.read_bytes() == pem_der  # stored as DER
    assert pki.is_trusted(der)
    assert pki.is_trusted(pem_der)
    assert pki.trust(der_file) == a  # idempotent
    infos = pki.list()
    assert {(i.thumbprint, i.trusted, i.application_uri) for i in infos} == {
        (thumbprint(der), True, "urn:server:a"),
        (thumbprint(pem_der), True, "urn:server:b"),
    }
    assert all(i.not_after > dt.datetime.now(dt.UTC) for i in infos)


def test_trust_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with pytest.raises(PkiError, match="cannot read"):
        pki.trust(tmp_path / "missing.der")
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(PkiError, match="not a DER or PEM"):
        pki.trust(junk)
    assert pki.list() == []


def test_untrust_by_thumbprint_or_file_name(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    paths = []
    for uri in ("urn:a", "urn:b"):
        der, _ = make_cert(uri)
        f = tmp_path / f"{uri[-1]}.der"
        f.write_bytes(der)
        paths.append((pki.trust(f), der))
    (pa, da), (pb, db) = paths
    sha = thumbprint(da).upper()
    colons = ":".join(sha[i : i + 2] for i in range(0, len(sha), 2))
    assert pki.untrust(colons) == pa
    assert not pki.is_trusted(da)
    assert pki.untrust(pb.name) == pb
    assert not pki.is_trusted(db)
    with pytest.raises(PkiError, match="no trusted certificate matches"):
        pki.untrust(pb.name)


def test_reject_then_trust_moves_the_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    der, _ = make_cert("urn:server:x")
    rejected = pki.reject(der)
    assert rejected == pki.rejected_dir / f"{thumbprint(der)}.der"
    assert pki.reject(der) == rejected
    [info] = pki.list()
    assert not info.trusted
    assert info.path == rejected
    pki.trust(rejected)
    assert not rejected.exists()
    [info] = pki.list()
    assert info.trusted


def test_certificate_signed_by_trusted_ca_is_trusted(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ca, ca_key = make_ca()
    other_ca, other_key = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.trust(tmp_path / "ca.pem")
    signed, _ = make_cert("urn:server:s", issuer=(ca, ca_key))
    foreign, _ = make_cert("urn:server:f", issuer=(other_ca, other_key))
    assert pki.is_trusted(signed)
    assert not pki.is_trusted(foreign)


async def test_validator_rejects_unknown_and_stores_it(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    der, _ = make_cert("urn:server:u")
    cert = x509.load_der_x509_certificate(der)
    v = pki.validator()
    with pytest.raises(ServiceError) as err:
        await v(cert, app("urn:server:u"))
    assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
    assert v.last_rejected == pki.rejected_dir / f"{thumbprint(der)}.der"
    assert v.last_rejected.read_bytes() == der
    pki.trust(v.last_rejected)
    await v(cert, app("urn:server:u"))  # now accepted
    with pytest.raises(ServiceError) as err:
        await v(cert, app("urn:server:impostor"))
    assert err.value.code == ua.StatusCodes.BadCertificateUriInvalid


async def test_validator_refuses_trusted_but_expired(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ca, ca_key = make_ca()
    (tmp_path / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    pki.trust(tmp_path / "ca.der")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    der, _ = make_cert("urn:server:old", days=1, issuer=(ca, ca_key), not_before=old)
    with pytest.raises(ServiceError) as err:
        await pki.validator()(x509.load_der_x509_certificate(der), app("urn:server:old"))
    assert err.value.code == ua.StatusCodes.BadCertificateTimeInvalid


async def test_trust_on_first_use_pins_the_first_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    v = pki.validator(trust_on_first_use=True)
    first, _ = make_cert("urn:server:t")
    await v(x509.load_der_x509_certificate(first), app("urn:server:t"))
    assert pki.is_trusted(first)
    changed, _ = make_cert("urn:server:t")  # same application, another certificate
    with pytest.raises(ServiceError) as err:
        await v(x509.load_der_x509_certificate(changed), app("urn:server:t"))
    assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
    assert v.last_rejected is not None
    assert v.last_rejected.read_bytes() == changed


def test_cli_trust_list_untrust(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    der, _ = make_cert("urn:server:cli")
    f = tmp_path / "server.der"
    f.write_bytes(der)
    root = tmp_path / "pki"
    assert cli.main(["opcua", "trust", str(f), "--pki", str(root)]) == 0
    trusted = root / "trusted" / "certs" / f"{thumbprint(der)}.der"
    assert f"trusted: {trusted}" in capsys.readouterr().out
    assert cli.main(["opcua", "list", "--pki", str(root)]) == 0
    out = capsys.readouterr().out
    assert "trusted " in out
    assert thumbprint(der) in out
    assert "urn:server:cli" in out
    assert cli.main(["opcua", "untrust", thumbprint(der), "--pki", str(root)]) == 0
    assert not trusted.exists()
    assert cli.main(["opcua", "untrust", thumbprint(der), "--pki", str(root)]) == 1
    assert "no trusted certificate matches" in capsys.readouterr().err


def test_cli_store_from_config_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nstate_dir = "st"\n')
    der, _ = make_cert("urn:server:cfg")
    f = tmp_path / "s.der"
    f.write_bytes(der)
    assert cli.main(["opcua", "trust", str(f), "--config", str(cfg)]) == 0
    assert (tmp_path / "st" / "pki" / "trusted" / "certs" / f"{thumbprint(der)}.der").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nnope = 1\n")
    assert cli.main(["opcua", "list", "--config", str(bad)]) == 2
    assert "gateway.nope: unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the store must be named
        cli.main(["opcua", "list"])
    assert exc.value.code == 2
