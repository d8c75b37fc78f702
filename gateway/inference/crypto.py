"""Models encrypted at rest: AES-256-GCM, decrypted only in memory.

The key file holds 32 random bytes as 64 hex digits and must not be accessible to group or
others (mode 0600 or stricter), else it is refused. An encrypted file is the 12-byte nonce
followed by the ciphertext and tag; the associated data is the model's manifest sha256, so a
ciphertext cannot be swapped between models.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import ConfigError

NONCE = 12
SUFFIX = ".enc"


def generate_key(path: Path) -> None:
    """Write a new key file (mode 0600, never overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(AESGCM.generate_key(bit_length=256).hex() + "\n")


def read_key(path: Path) -> bytes:
    """The key of ``path``; ``ConfigError`` if group/other may access it or it is malformed."""
    key = "models.encryption_key"
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError([(key, f"{path}: cannot read: {exc.strerror or exc}")]) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            [
                (
                    key,
                    f"{path}: mode {stat.S_IMODE(mode):04o} lets group or others access the "
                    "key; make it readable only by the service user (chmod 600)",
                )
            ]
        )
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError([(key, f"{path}: expected 64 hex digits (a 256-bit key)")])
    return raw


def encrypt(key: bytes, data: bytes, sha256: str) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, data, sha256.encode())


def decrypt(key: bytes, blob: bytes, sha256: str, what: str) -> bytes:
    """Plain bytes of ``blob``; ``ConfigError`` naming ``what`` on a wrong key or damage."""
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], sha256.encode())
    except InvalidTag:
        raise ConfigError(
            [("", f"{what}: cannot decrypt: wrong encryption key or damaged file")]
        ) from None
