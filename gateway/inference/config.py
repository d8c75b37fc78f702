"""Configuration schema of edge inference and the model registry (``[models]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.core.configbase import StrictModel


class ModelsConfig(StrictModel):
    """``registry_dir`` relative paths are inside ``gateway.state_dir``; ``assets`` maps an asset to
    the model id that scores it."""

    registry_dir: Path = Path("models")
    allow_unsigned: bool = False
    trusted_keys: list[Path] = Field(default_factory=list)
    threads: int = Field(1, ge=1, le=8)
    assets: dict[str, str] = Field(default_factory=dict)
