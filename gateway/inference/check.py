"""Start-up check: does the configured DSP feed a model the features its manifest names?"""

from __future__ import annotations

from gateway.config.plant import Asset, Channel
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.features import SCHEMA_VERSION
from gateway.inference.features import window_mismatch
from gateway.inference.manifest import Manifest, feature_mismatch


def scored_channels(manifest: Manifest, channels: dict[str, Channel], asset: Asset) -> list[str]:
    """The asset's channels a model scores: its waveform channels of the manifest's kind."""
    return [
        c for c in asset.channels if c in channels and channels[c].kind == manifest.channel_kind
    ]


def check_model_features(
    manifest: Manifest,
    channels: dict[str, Channel],
    assets: dict[str, Asset],
    dsp: DspConfig,
    key: str,
) -> list[tuple[str, str]]:
    """Errors (``(key, reason)``) naming each mismatch between the model and every channel of
    ``assets`` it would score; an asset with no such channel is an error too."""
    errors: list[tuple[str, str]] = []
    for name, asset in assets.items():
        scored = scored_channels(manifest, channels, asset)
        if not scored:
            errors.append(
                (
                    key,
                    f"asset {name!r} has no {manifest.channel_kind} channel for model "
                    f"{manifest.model_id}",
                )
            )
        for c in scored:
            ch = channels[c]
            assert ch.sample_rate_hz is not None
            if manifest.dsp.max_frequency_hz >= ch.sample_rate_hz / 2:
                errors.append(
                    (
                        key,
                        f"channel {c!r}: model {manifest.model_id} uses features up to "
                        f"{manifest.dsp.max_frequency_hz} Hz, above its Nyquist frequency "
                        f"{ch.sample_rate_hz / 2} Hz",
                    )
                )
                continue
            why_w = window_mismatch(manifest.dsp, dsp.window, ch.sample_rate_hz)
            if why_w:
                errors.append((key, f"channel {c!r}: {why_w}"))
                continue
            names = ChannelExtractor(ch, asset, dsp).names
            why = feature_mismatch(manifest, SCHEMA_VERSION, names)
            if why:
                errors.append((key, f"channel {c!r}: {why}"))
    return errors
