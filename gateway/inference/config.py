"""Configuration schema of edge inference and the model registry (``[models]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.core.configbase import StrictModel


class RollbackConfig(StrictModel):
    """When a newly promoted model is rolled back by itself: it fails to load, emits a NaN/inf
    score, or, ``period_s`` seconds after promotion with at least ``min_frames`` scored, its
    alert rate (scores above threshold / scored) exceeds ``factor`` times the previous model's
    (taken as at least ``min_alert_rate``)."""

    enabled: bool = True
    period_s: float = Field(3600.0, gt=0)
    factor: float = Field(2.0, gt=1)
    min_frames: int = Field(50, ge=1)
    min_alert_rate: float = Field(0.01, gt=0, le=1)


class UpdatesConfig(StrictModel):
    """Pulled model updates (``[models.updates]``): every ``interval_s`` the gateway reads
    ``index.json`` of ``repository`` (a directory, or an ``https://`` URL; ``ca_file`` a PEM
    bundle trusted for it besides the system's, e.g. a self-signed server certificate) and
    installs each listed version of a model it runs that is released to its ``ring`` and not yet
    installed nor refused before. ``on_arrival``: ``shadow`` runs the new version beside the
    active one, ``promote`` makes it active (on probation, rolled back automatically).
    ``delay_s``: a version is taken only that many seconds after this gateway first saw it
    released to its ring (e.g. an ``early`` ring waits for the canaries).
    ``max_bytes`` bounds one downloaded file; ``timeout_s`` one request."""

    repository: str = Field(min_length=1)
    ca_file: Path | None = None
    interval_s: float = Field(3600.0, gt=0)
    ring: Literal["canary", "early", "broad"] = "broad"
    on_arrival: Literal["shadow", "promote"] = "shadow"
    delay_s: float = Field(0.0, ge=0)
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    @field_validator("repository")
    @classmethod
    def _no_plain_http(cls, v: str) -> str:
        if "://" in v and not v.startswith("https://"):
            raise ValueError("must be a directory or an https:// URL")
        return v


class ModelsConfig(StrictModel):
    """``registry_dir`` relative paths are inside ``gateway.state_dir``; ``assets`` maps an asset to
    the model id that scores it. A model id installed in the registry (``pdm-gateway models
    install``) runs its active version (verified and, with ``encryption_key``, decrypted in
    memory); otherwise the model is the unmanaged directory ``registry_dir/<model id>`` (its
    ``manifest.json`` and ``.tflite``, sha256 checked) unless ``paths`` names another directory
    for that id (relative paths are inside ``gateway.state_dir`` too). ``threads`` is the
    interpreter's thread count; ``batch`` the most frames scored in one interpreter call.
    ``inline``: each batch of frames is scored on the DSP stage's worker thread right after its
    features are computed (one thread hand-off per batch instead of two: less CPU and latency);
    ``false`` scores on a thread of its own, so that the features of a batch and the scores of
    the one before can use two cores (for more channels than one core computes features for).
    ``trusted_keys`` are Ed25519 public keys (PEM) whose signatures install accepts;
    ``allow_unsigned`` lets unsigned models in. ``encryption_key`` (a file of mode 0600 or
    stricter) stores installed models AES-GCM encrypted at rest. ``watch_interval_s``: how often
    a running gateway looks for registry changes (promote, rollback from the command line).
    ``updates``: pulled updates from a model repository (``UpdatesConfig``)."""

    registry_dir: Path = Path("models")
    allow_unsigned: bool = False
    trusted_keys: list[Path] = Field(default_factory=list)
    encryption_key: Path | None = None
    watch_interval_s: float = Field(1.0, gt=0, le=3600)
    rollback: RollbackConfig = RollbackConfig()
    threads: int = Field(1, ge=1, le=8)
    batch: int = Field(64, ge=1, le=4096)
    inline: bool = True
    assets: dict[str, str] = Field(default_factory=dict)
    paths: dict[str, Path] = Field(default_factory=dict)
    updates: UpdatesConfig | None = None

    def model_dir(self, state_dir: Path, model_id: str) -> Path:
        """The unmanaged directory of model ``model_id``."""
        if model_id in self.paths:
            return state_dir / self.paths[model_id]  # an absolute path stays as it is
        return state_dir / self.registry_dir / model_id

    def registry_path(self, state_dir: Path) -> Path:
        return state_dir / self.registry_dir
