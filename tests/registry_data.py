"""Real LiteRT models for registry and lifecycle tests: versions of one small model, a model
that scores NaN, signing keys, and a config whose registry lives in a temporary state dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.config.schema import GatewayConfig
from gateway.core.records import FeatureFrame
from gateway.dsp.features import SCHEMA_VERSION
from gateway.inference.flatbuffer import build_residual_model
from gateway.inference.manifest import DspRequirements, read_manifest, sha256_of, write_model
from tests.unit.test_inference import FEATURES, healthy, make_model

UNITS = ("g^2", "g^2", "mm/s", "um")


def version(
    root: Path, v: str, *, threshold: float = 10.0, nan: bool = False, window: int = 4096
) -> Path:
    """Model ``test-model`` version ``v`` in ``root/v`` (``nan``: its .tflite scores NaN) for
    windows of ``window`` samples at 5120 Hz."""
    dsp = DspRequirements(
        bands_hz=[(10.0, 100.0), (100.0, 1000.0)], window_s=window / 5120, max_frequency_hz=1000
    )
    d = make_model(root / v, version=v, threshold=threshold, dsp=dsp)
    if nan:
        m = read_manifest(d)
        content = build_residual_model(np.full((m.score.components, 4), np.nan, np.float32))
        write_model(d, m.model_copy(update={"sha256": sha256_of(content)}), content)
    return d


def config(state: Path, **models: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"state_dir": str(state)},
            "channels": {"vib": {"kind": "vibration", "sample_rate_hz": 5120.0}},
            "assets": {"pump": {"channels": ["vib"]}},
            "dsp": {"bands_hz": [[10, 100], [100, 1000]]},
            "models": {"assets": {"pump": "test-model"}, **models},
        }
    )


def frames(n: int, start: int = 0, seed: int = 3) -> list[FeatureFrame]:
    """``n`` healthy frames of asset pump, channel vib, ``end_ts_ns`` = start .. start+n-1."""
    x = healthy(n, seed=seed)
    return [
        FeatureFrame(
            "pump", "vib", t - 1, t, t, SCHEMA_VERSION, tuple(FEATURES), UNITS, x[i].copy()
        )
        for i, t in enumerate(range(start, start + n))
    ]
