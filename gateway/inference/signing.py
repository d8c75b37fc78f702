"""Ed25519 signatures over a model's canonical manifest (the publisher signs, the gateway checks).

The canonical manifest is the manifest's JSON without its ``signature`` field, keys sorted, no
whitespace, UTF-8. Since the manifest holds the ``.tflite``'s sha256, the signature covers the
model too. ``Manifest.signature`` is ``"ed25519:<key id>:<base64 signature>"``; the key id is the
first 16 hex digits of the sha256 of the raw public key (it names the key, the check tries it).
Keys are PEM files: PKCS#8 private keys (written mode 0600), SubjectPublicKeyInfo public keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core.errors import ConfigError
from gateway.inference.manifest import Manifest

PREFIX = "ed25519"


class SignatureError(Exception):
    """A manifest's signature is missing, malformed, from an unknown key, or does not verify."""


def canonical(manifest: Manifest) -> bytes:
    """The bytes a signature covers."""
    body = manifest.model_dump(mode="json")
    body.pop("signature", None)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(manifest: Manifest, private: Ed25519PrivateKey) -> Manifest:
    """A copy of ``manifest`` carrying the signature of ``private``."""
    sig = base64.b64encode(private.sign(canonical(manifest))).decode()
    return manifest.model_copy(
        update={"signature": f"{PREFIX}:{key_id(private.public_key())}:{sig}"}
    )


def verify(manifest: Manifest, trusted: list[Ed25519PublicKey]) -> str:
    """The key id that signed ``manifest``; ``SignatureError`` saying why not otherwise."""
    if manifest.signature is None:
        raise SignatureError("the manifest is unsigned")
    parts = manifest.signature.split(":")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SignatureError("the manifest's signature is malformed")
    try:
        sig = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise SignatureError("the manifest's signature is malformed") from None
    keys = {key_id(k): k for k in trusted}
    key = keys.get(parts[1])
    if key is None:
        raise SignatureError(f"signed by key {parts[1]}, which is not among the trusted keys")
    try:
        key.verify(sig, canonical(manifest))
    except InvalidSignature:
        raise SignatureError(
            f"the signature by key {parts[1]} does not match the manifest (tampered manifest)"
        ) from None
    return parts[1]


def generate(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (the private key mode 0600, never overwritten); its key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_id(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ``ConfigError`` naming the file if not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError([("", f"{path}: not a readable Ed25519 private key ({exc})")]) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError([("", f"{path}: not an Ed25519 private key")])
    return key


def load_public(paths: list[Path], base: Path) -> list[Ed25519PublicKey]:
    """The public keys of ``paths`` (relative ones inside ``base``); ``ConfigError`` at
    ``models.trusted_keys.<i>`` for each unreadable one."""
    keys: list[Ed25519PublicKey] = []
    errors: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        path = base / p
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            errors.append((f"models.trusted_keys.{i}", f"{path}: cannot load ({exc})"))
            continue
        if not isinstance(key, Ed25519PublicKey):
            errors.append((f"models.trusted_keys.{i}", f"{path}: not an Ed25519 public key"))
            continue
        keys.append(key)
    if errors:
        raise ConfigError(errors)
    return keys
