"""A loaded model: manifest + runner. Picks the model's features out of a frame, normalises
them as the manifest says, and scores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.inference.baseline import normalise
from gateway.inference.manifest import Manifest, read_model
from gateway.inference.runtime import ModelRunner

F64 = npt.NDArray[np.float64]


@dataclass
class Scorer:
    manifest: Manifest
    runner: ModelRunner
    _index: dict[tuple[str, ...], npt.NDArray[np.intp] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        norm = self.manifest.normalisation
        self.log_mask = np.array([t == "log10" for t in norm.transform])
        self.mean = np.array(norm.mean)
        self.std = np.array(norm.std)
        self.soft_clip = norm.soft_clip
        if self.runner.n_features != len(self.manifest.features):
            raise ValueError(
                f"model {self.manifest.model_id}: the .tflite takes {self.runner.n_features} "
                f"features, the manifest lists {len(self.manifest.features)}"
            )

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    def columns(self, names: tuple[str, ...]) -> npt.NDArray[np.intp] | None:
        """Indices of the model's features in a frame with ``names``, or None if any is absent
        (cached per names tuple; frames of one channel share theirs)."""
        if names not in self._index:
            pos = {n: i for i, n in enumerate(names)}
            idx = [pos.get(f) for f in self.manifest.features]
            self._index[names] = (
                None if any(i is None for i in idx) else np.array(idx, dtype=np.intp)
            )
        return self._index[names]

    def score(self, x: F64) -> F64:
        """Scores of rows ``x`` (n, F) of raw features in the manifest's order."""
        return self.runner.run(normalise(x, self.log_mask, self.mean, self.std, self.soft_clip))


def load_scorer(model_dir: Path, threads: int = 1, max_batch: int = 64) -> Scorer:
    """Load and verify a model directory (``ConfigError`` when unreadable or tampered)."""
    manifest, content = read_model(model_dir)
    return Scorer(manifest, ModelRunner(content, threads, max_batch))
