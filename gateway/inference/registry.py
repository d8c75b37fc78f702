"""The model registry in the gateway's state directory: every installed version of every model,
and which version of each model is active, which runs in shadow, and what rollback returns to.

Layout under ``models.registry_dir``: ``<model id>/<version>/`` holds ``manifest.json`` and the
``.tflite`` (``<file>.enc`` when encrypted at rest); ``registry.json`` the durable state (written
to a temporary file, fsynced, then renamed over the old one, so a crash or a restart keeps
either the old or the new state, never a mix); ``stats.json`` the running gateway's score
summary per version. Read-modify-write of the state holds an exclusive ``flock`` on ``.lock``,
so the command line and a running gateway can both change it. Every version is kept until
``remove``; the active and the shadow version cannot be removed.

Install and load verify the ``.tflite``'s sha256 against the manifest and the manifest's Ed25519
signature against ``models.trusted_keys``; an unsigned model passes only with
``models.allow_unsigned``; a bad signature never does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.errors import ConfigError
from gateway.inference import crypto, signing
from gateway.inference.config import ModelsConfig
from gateway.inference.manifest import MANIFEST_NAME, Manifest, read_manifest, sha256_of

STATE = "registry.json"
STATS = "stats.json"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class RefusedError(ValueError):
    """A model or a state change was refused; the message says why."""


class UnknownError(KeyError):
    """An unknown model id or version."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class ModelState:
    """``versions`` in install order; ``history`` the previously active versions, latest last;
    ``rejected`` the versions rolled back or refused automatically, with the reason."""

    active: str | None = None
    shadow: str | None = None
    versions: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: object, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` as JSON: write a temporary file, rename it over ``path``
    (``durable``: fsync the file before and the directory after)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)
    if durable:
        _fsync_dir(path.parent)


class Registry:
    """Installed models of one gateway (``state_dir``, ``cfg``); see the module docstring."""

    def __init__(self, cfg: ModelsConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.root = cfg.registry_path(state_dir)
        self._state_dir = state_dir
        self._trusted: list[Ed25519PublicKey] | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / STATE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read_state(self) -> dict[str, ModelState]:
        """The state per model id ({} before the first install)."""
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(
                [("", f"{self.state_path}: unreadable registry state ({exc})")]
            ) from None
        try:
            return {k: ModelState(**v) for k, v in raw.get("models", {}).items()}
        except (AttributeError, TypeError) as exc:
            raise ConfigError(
                [("", f"{self.state_path}: unreadable registry state ({exc})")]
            ) from None

    def _write_state(self, state: dict[str, ModelState]) -> None:
        write_json_atomic(self.state_path, {"models": {k: asdict(v) for k, v in state.items()}})

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the state file is replaced (None while there is none)."""
        try:
            st = self.state_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def managed(self, model_id: str) -> bool:
        """Whether ``model_id`` has an active version in the registry."""
        s = self.read_state().get(model_id)
        return s is not None and s.active is not None

    def _model(self, state: dict[str, ModelState], model_id: str) -> ModelState:
        if model_id not in state:
            raise UnknownError(f"model {model_id!r} is not installed")
        return state[model_id]

    @staticmethod
    def _version(s: ModelState, model_id: str, version: str) -> None:
        if version not in s.versions:
            raise UnknownError(f"model {model_id!r} has no installed version {version!r}")

    # -- verification ----------------------------------------------------------------------
    def trusted(self) -> list[Ed25519PublicKey]:
        if self._trusted is None:
            self._trusted = signing.load_public(self.cfg.trusted_keys, self._state_dir)
        return self._trusted

    def _enc_key(self) -> bytes | None:
        if self.cfg.encryption_key is None:
            return None
        return crypto.read_key(self._state_dir / self.cfg.encryption_key)

    def verify(self, manifest: Manifest, content: bytes, where: Path) -> None:
        """``RefusedError`` saying which check failed: sha256 of the .tflite, the signature."""
        digest = sha256_of(content)
        if digest != manifest.sha256:
            raise RefusedError(
                f"{where}: refused: the .tflite's sha256 {digest} does not match the manifest's "
                f"{manifest.sha256} (tampered or damaged model file)"
            )
        if manifest.signature is None and self.cfg.allow_unsigned:
            return
        try:
            signing.verify(manifest, self.trusted())
        except signing.SignatureError as exc:
            hint = " (models.allow_unsigned is false)" if manifest.signature is None else ""
            raise RefusedError(f"{where}: refused: {exc}{hint}") from None

    # -- operations ------------------------------------------------------------------------
    def install(self, src: Path, *, promote: bool = False, shadow: bool = False) -> Manifest:
        """Verify and copy the model at ``src`` (a directory, its manifest or its .tflite) into
        the registry; the first version of a model becomes active, ``promote``/``shadow``
        make it active/shadow. ``RefusedError`` when a check fails (nothing is changed)."""
        model_dir = src if src.is_dir() else src.parent
        manifest = read_manifest(model_dir)
        if not VERSION_RE.match(manifest.version):
            raise RefusedError(f"{model_dir}: version {manifest.version!r} is not a safe name")
        try:
            content = (model_dir / manifest.file).read_bytes()
        except OSError as exc:
            raise RefusedError(f"{model_dir / manifest.file}: cannot read: {exc}") from None
        self.verify(manifest, content, model_dir)
        key = self._enc_key()
        with self._locked():
            state = self.read_state()
            s = state.setdefault(manifest.model_id, ModelState())
            dest = self.root / manifest.model_id / manifest.version
            if manifest.version in s.versions or dest.exists():
                raise RefusedError(
                    f"model {manifest.model_id} version {manifest.version} is already installed"
                )
            tmp = dest.with_name(f".{manifest.version}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if key is None:
                (tmp / manifest.file).write_bytes(content)
            else:
                blob = crypto.encrypt(key, content, manifest.sha256)
                (tmp / (manifest.file + crypto.SUFFIX)).write_bytes(blob)
            (tmp / MANIFEST_NAME).write_text(manifest.dump())
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            tmp.rename(dest)
            _fsync_dir(dest.parent)
            s.versions.append(manifest.version)
            if promote or s.active is None:
                if s.active is not None:
                    s.history.append(s.active)
                s.active = manifest.version
            elif shadow:
                s.shadow = manifest.version
            self._write_state(state)
        return manifest

    def load(self, model_id: str, version: str) -> tuple[Manifest, bytes]:
        """The verified (and decrypted, in memory) manifest and .tflite of an installed
        version; ``RefusedError``/``ConfigError`` saying why not."""
        d = self.root / model_id / version
        manifest = read_manifest(d)
        plain, enc = d / manifest.file, d / (manifest.file + crypto.SUFFIX)
        try:
            if enc.exists():
                key = self._enc_key()
                if key is None:
                    raise RefusedError(f"{enc}: encrypted, and models.encryption_key is not set")
                content = crypto.decrypt(key, enc.read_bytes(), manifest.sha256, str(enc))
            else:
                content = plain.read_bytes()
        except OSError as exc:
            raise RefusedError(f"{d}: cannot read: {exc}") from None
        self.verify(manifest, content, d)
        if manifest.model_id != model_id or manifest.version != version:
            raise RefusedError(f"{d}: the manifest names {manifest.model_id} {manifest.version}")
        return manifest, content

    def promote(self, model_id: str, version: str, *, force: bool = False) -> str | None:
        """Make ``version`` active (the active one goes to the history); the previous active
        version. A version rejected before is refused unless ``force``."""
        with self._locked():
            state = self.read_state()
            s = self._model(state, model_id)
            self._version(s, model_id, version)
            if version in s.rejected and not force:
                raise RefusedError(
                    f"model {model_id} version {version} was rejected ({s.rejected[version]})"
                )
            previous = s.active
            if previous == version:
                return previous
            if previous is not None:
                s.history.append(previous)
            s.active = version
            s.rejected.pop(version, None)
            if s.shadow == version:
                s.shadow = None
            self._write_state(state)
            return previous

    def set_shadow(self, model_id: str, version: str | None) -> None:
        """Run ``version`` beside the active one (None: stop shadowing)."""
        with self._locked():
            state = self.read_state()
            s = self._model(state, model_id)
            if version is not None:
                self._version(s, model_id, version)
                if version == s.active:
                    raise RefusedError(f"model {model_id} version {version} is the active one")
            s.shadow = version
            self._write_state(state)

    def rollback(self, model_id: str, reason: str | None = None) -> str:
        """Make the previously active version active again; the version now active. With a
        ``reason`` the rolled-back version is marked rejected (and not promoted again unless
        forced)."""
        with self._locked():
            state = self.read_state()
            s = self._model(state, model_id)
            while s.history and s.history[-1] not in s.versions:
                s.history.pop()  # removed since
            if not s.history:
                raise RefusedError(f"model {model_id} has no previous version to roll back to")
            bad = s.active
            s.active = s.history.pop()
            if bad is not None and reason is not None:
                s.rejected[bad] = reason
            self._write_state(state)
            return s.active

    def reject(self, model_id: str, version: str, reason: str) -> None:
        """Mark ``version`` rejected (and stop shadowing it)."""
        with self._locked():
            state = self.read_state()
            s = self._model(state, model_id)
            s.rejected[version] = reason
            if s.shadow == version:
                s.shadow = None
            self._write_state(state)

    def remove(self, model_id: str, version: str) -> None:
        """Delete an installed version that is neither active nor shadow."""
        with self._locked():
            state = self.read_state()
            s = self._model(state, model_id)
            self._version(s, model_id, version)
            if version in (s.active, s.shadow):
                role = "active" if version == s.active else "shadow"
                raise RefusedError(f"model {model_id} version {version} is the {role} version")
            s.versions.remove(version)
            s.history = [v for v in s.history if v != version]
            s.rejected.pop(version, None)
            if not s.versions:
                del state[model_id]
            self._write_state(state)
            shutil.rmtree(self.root / model_id / version)

    def read_stats(self) -> dict[str, object]:
        """The running gateway's last score summary ({} if none)."""
        try:
            data = json.loads((self.root / STATS).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_stats(self, stats: dict[str, object]) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(self.root / STATS, stats, durable=False)  # rewritten while running
