"""Pulled model updates with a staged roll-out (``[models.updates]``).

A model repository is a directory or an ``https://`` URL holding ``index.json``::

    {"models": [{"model_id": "pump-bearing", "version": "2.0", "path": "pump-bearing/2.0",
                 "rings": ["canary", "early"]}]}

``path`` (relative to the repository, no ``..``) is a model directory: its ``manifest.json``
and the ``.tflite`` the manifest names; an optional ``"arrival": "shadow" | "promote"``
overrides the gateway's ``on_arrival`` for that version. ``rings`` lists the roll-out rings
the version is released to; a publisher widens a release by adding rings (``canary`` first,
then ``early``, then ``broad``).

One round (``Puller.pull_once``) takes every entry of a model id this gateway runs
(``models.assets``) released to its ``models.updates.ring`` that is neither installed nor
refused before: it downloads the files into a fresh ``.incoming-*`` directory of the registry and
installs them with ``Registry.install`` (sha256 and Ed25519 signature verified), as shadow or
promoted (a running gateway's ``ModelController`` then loads it; a promoted version is on
probation and rolled back automatically). A refused version is recorded in ``updates.json`` of
the registry with the reason and never fetched again. With ``delay_s`` a version is taken only
that long after this gateway first saw it released to its ring (an ``early`` ring waits for
the canaries' shadow runs; the first sighting is kept in ``updates.json`` across restarts).

An unreachable repository, a file missing from it or a bad index changes nothing (retried next
round): the round is counted as failed and logged once per change of the failure (and once on
recovery).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import BaseModel, ValidationError

from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.inference.config import ModelsConfig, UpdatesConfig
from gateway.inference.manifest import MANIFEST_NAME, read_manifest
from gateway.inference.registry import RefusedError, Registry, write_json_atomic

log = logging.getLogger(__name__)

INDEX = "index.json"
RECORD = "updates.json"
_REL = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


class FetchError(Exception):
    """The repository or one of its files could not be read (nothing was changed)."""


class IndexEntry(BaseModel):
    model_id: str
    version: str
    path: str
    rings: list[Literal["canary", "early", "broad"]]
    #: overrides ``models.updates.on_arrival`` for this version
    arrival: Literal["shadow", "promote"] | None = None


class Index(BaseModel):
    models: list[IndexEntry]


@dataclass
class PullResult:
    """One round: ``installed`` (model id, version, role), ``refused`` (model id, version,
    reason), ``error`` why the round stopped early (None when it completed)."""

    installed: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None


def _safe_rel(rel: str) -> str:
    if not _REL.match(rel) or any(p in (".", "..") for p in rel.split("/")):
        raise FetchError(f"unsafe path {rel!r} in the index")
    return rel


class _Source:
    """Reads files of a repository (directory or HTTPS) by relative path."""

    def __init__(self, cfg: UpdatesConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.https = cfg.repository.startswith("https://")
        self.base = state_dir / cfg.repository  # a directory; an absolute one stays as it is
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        if self.https:
            self._ssl = ssl.create_default_context()
            if cfg.ca_file is not None:
                self._ssl.load_verify_locations(cafile=state_dir / cfg.ca_file)

    async def __aenter__(self) -> _Source:
        if self.https:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, rel: str) -> bytes:
        rel = _safe_rel(rel)
        if self._session is None:
            path = self.base / rel
            try:
                data = await asyncio.to_thread(self._read, path)
            except OSError as exc:
                raise FetchError(f"{path}: {exc.strerror or exc}") from None
        else:
            url = self.cfg.repository.rstrip("/") + "/" + rel
            try:
                async with self._session.get(url, ssl=self._ssl or True) as resp:
                    if resp.status != 200:
                        raise FetchError(f"{url}: HTTP {resp.status}")
                    data = await resp.content.read(self.cfg.max_bytes + 1)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise FetchError(f"{url}: {_client_why(exc)}") from None
            path = Path(rel)
        if len(data) > self.cfg.max_bytes:
            raise FetchError(f"{rel}: larger than models.updates.max_bytes")
        return data

    def _read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read(self.cfg.max_bytes + 1)


class Puller:
    """Pulls updates into ``registry`` per ``cfg.updates`` (which must be set). ``rounds``,
    ``failed_rounds``, ``installed`` and ``refused`` count since start; ``failing`` is the
    current failure (None while the repository answers)."""

    def __init__(
        self, cfg: ModelsConfig, state_dir: Path, registry: Registry, clock: Clock | None = None
    ) -> None:
        assert cfg.updates is not None
        self.cfg, self.ucfg, self.state_dir, self.registry = cfg, cfg.updates, state_dir, registry
        self.clock: Clock = clock or SystemClock()
        self.rounds = self.failed_rounds = self.installed = self.refused = 0
        self.failing: str | None = None

    @property
    def record_path(self) -> Path:
        return self.registry.root / RECORD

    def _record(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def _write_record(self, record: dict[str, dict[str, object]]) -> None:
        self.registry.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(self.record_path, record)

    def read_refused(self) -> dict[str, str]:
        """``"<model id>/<version>"`` -> why it was refused ({} before the first refusal)."""
        return {k: str(v) for k, v in self._record().get("refused", {}).items()}

    def _refuse(self, mid: str, version: str, why: str) -> None:
        record = self._record()
        record.setdefault("refused", {})[f"{mid}/{version}"] = why
        self._write_record(record)

    def _wanted(self, index: Index) -> list[IndexEntry]:
        """The entries to take now; records when each was first seen released to our ring
        (``seen``, epoch ns, kept across restarts) for ``delay_s``."""
        ours = set(self.cfg.assets.values())
        state, record = self.registry.read_state(), self._record()
        refused, seen = record.get("refused", {}), record.setdefault("seen", {})
        now, out, changed = self.clock.now_ns(), [], False
        for e in index.models:
            s = state.get(e.model_id)
            key = f"{e.model_id}/{e.version}"
            if (
                e.model_id in ours
                and self.ucfg.ring in e.rings
                and (s is None or e.version not in s.versions)
                and key not in refused
            ):
                first = seen.get(key)
                if not isinstance(first, int):
                    seen[key], first, changed = now, now, True
                if now - first >= self.ucfg.delay_s * 1e9:
                    out.append(e)
        if changed:
            self._write_record(record)
        return out

    async def pull_once(self) -> PullResult:
        """One round (see the module docstring); never raises for repository trouble."""
        self.rounds += 1
        result = PullResult()
        try:
            async with _Source(self.ucfg, self.state_dir) as src:
                try:
                    index = Index.model_validate_json(await src.get(INDEX))
                except ValidationError as exc:
                    e = exc.errors()[0]
                    where = ".".join(str(p) for p in e["loc"])
                    raise FetchError(f"{INDEX}: bad index ({where}: {e['msg']})") from None
                for entry in self._wanted(index):
                    await self._take(src, entry, result)
        except (FetchError, ConfigError, OSError, ssl.SSLError) as exc:
            why = _why(exc)
            result.error = why
            self.failed_rounds += 1
            if why != self.failing:
                log.error("model repository %s: %s; models unchanged", self.ucfg.repository, why)
            self.failing = why
            return result
        if self.failing is not None:
            log.warning("model repository %s: reachable again", self.ucfg.repository)
            self.failing = None
        return result

    async def _take(self, src: _Source, e: IndexEntry, result: PullResult) -> None:
        """Download and install one entry; a refusal is recorded, a fetch error raised."""
        rel = _safe_rel(e.path)
        self.registry.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # its own directory (mode 0700), so `models pull` beside a running gateway cannot clash
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.registry.root))
        try:
            (incoming / MANIFEST_NAME).write_bytes(await src.get(f"{rel}/{MANIFEST_NAME}"))
            try:
                manifest = read_manifest(incoming)
                if (manifest.model_id, manifest.version) != (e.model_id, e.version):
                    raise RefusedError(
                        f"the manifest names {manifest.model_id} {manifest.version}, the index "
                        f"{e.model_id} {e.version}"
                    )
                if "/" in manifest.file or manifest.file in (".", "..", MANIFEST_NAME):
                    raise RefusedError(f"unsafe model file name {manifest.file!r}")
            except (RefusedError, ConfigError) as exc:
                self._refused(e, _why(exc), result)
                return
            (incoming / manifest.file).write_bytes(await src.get(f"{rel}/{manifest.file}"))
            promote = (e.arrival or self.ucfg.on_arrival) == "promote"
            try:
                await asyncio.to_thread(
                    self.registry.install, incoming, promote=promote, shadow=not promote
                )
            except (RefusedError, ConfigError) as exc:
                self._refused(
                    e, _why(exc).replace(str(incoming), f"{e.model_id} {e.version}"), result
                )
                return
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        s = self.registry.read_state()[e.model_id]
        role = "active" if s.active == e.version else "shadow" if s.shadow == e.version else ""
        self.installed += 1
        result.installed.append((e.model_id, e.version, role))
        log.warning(
            "model %s %s pulled from %s and installed as %s",
            e.model_id,
            e.version,
            self.ucfg.repository,
            role or "inactive",
        )

    def _refused(self, e: IndexEntry, why: str, result: PullResult) -> None:
        self.refused += 1
        self._refuse(e.model_id, e.version, why)
        result.refused.append((e.model_id, e.version, why))
        log.error(
            "model %s %s from %s refused: %s", e.model_id, e.version, self.ucfg.repository, why
        )

    def status(self) -> dict[str, object]:
        return {
            "repository": self.ucfg.repository,
            "ring": self.ucfg.ring,
            "rounds": self.rounds,
            "failed_rounds": self.failed_rounds,
            "installed": self.installed,
            "refused": self.refused,
            "failing": self.failing or "",
        }


def _client_why(exc: Exception) -> str:
    """A message without per-attempt details, so a lasting failure compares equal."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _why(exc: Exception) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(f"{p}: {r}" if p else r for p, r in exc.errors)
    return str(exc) or type(exc).__name__
