"""Configuration schema of edge inference and the model registry (``[models]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.core.configbase import StrictModel


class ModelsConfig(StrictModel):
    """``registry_dir`` relative paths are inside ``gateway.state_dir``; ``assets`` maps an asset to
    the model id that scores it; the model is the directory ``registry_dir/<model id>`` (its
    ``manifest.json`` and ``.tflite``) unless ``paths`` names another directory for that id
    (relative paths are inside ``gateway.state_dir`` too). ``threads`` is the interpreter's thread
    count; ``batch`` the most frames scored in one interpreter call."""

    registry_dir: Path = Path("models")
    allow_unsigned: bool = False
    trusted_keys: list[Path] = Field(default_factory=list)
    threads: int = Field(1, ge=1, le=8)
    batch: int = Field(64, ge=1, le=4096)
    assets: dict[str, str] = Field(default_factory=dict)
    paths: dict[str, Path] = Field(default_factory=dict)

    def model_dir(self, state_dir: Path, model_id: str) -> Path:
        """The directory of model ``model_id``."""
        if model_id in self.paths:
            return state_dir / self.paths[model_id]  # an absolute path stays as it is
        return state_dir / self.registry_dir / model_id
