"""Configuration schema of bandwidth-aware forwarding (``[forwarding]``).

Per asset (``[forwarding.assets.<asset>]``: the keys it sets override ``[forwarding.default]``,
``snapshot`` key by key; an asset not listed uses the default):

- ``mode = "full"`` forwards every window's features and scores (the default);
  ``mode = "summary"`` forwards, per channel, min/mean/max/last of every feature over
  ``summary_interval_s`` seconds, plus full-rate detail only from ``pre_trigger_s`` before to
  ``post_trigger_s`` after each raised machine alert. Alerts always go at once.
- ``[...snapshot]``: raw-waveform snapshots of the asset's waveform channels, taken on each raised
  machine alert and (at most every ``min_interval_s``) for scores inside ``ambiguous_band``;
  kept in the store.
- ``escalate = true`` sends the asset's snapshots to ``[forwarding.escalation]``. Raw data never
  leaves the site otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from gateway.core.configbase import Backoff, StrictModel


class SnapshotConfig(StrictModel):
    """Raw samples around a window: the last ``length_s`` seconds of each waveform channel,
    stored as ``dtype`` (``int16`` scaled to the block's peak, or ``float32``), zlib-compressed.
    ``ambiguous_band`` is a ``[low, high]`` score range (inclusive). Off unless ``enabled``."""

    enabled: bool = False
    length_s: float = Field(2.0, gt=0, le=60)
    dtype: Literal["int16", "float32"] = "int16"
    ambiguous_band: tuple[float, float] | None = None
    min_interval_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _band(self) -> SnapshotConfig:
        if self.ambiguous_band is not None and self.ambiguous_band[0] > self.ambiguous_band[1]:
            raise ValueError("ambiguous_band: low must not exceed high")
        return self


class AssetForwarding(StrictModel):
    mode: Literal["full", "summary"] = "full"
    summary_interval_s: float = Field(60.0, gt=0, le=86400)
    pre_trigger_s: float = Field(60.0, ge=0, le=86400)
    post_trigger_s: float = Field(60.0, ge=0, le=86400)
    snapshot: SnapshotConfig = SnapshotConfig()
    escalate: bool = False


class EscalationConfig(StrictModel):
    """The HTTPS endpoint snapshots are escalated to (POST, JSON). ``token`` (a secret: use
    ``${ENV_VAR}``) goes as a bearer token; TLS is verified against ``ca_file`` (else the system
    store). ``name`` keys this sink's cursor in the journal."""

    name: str = Field("escalation", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    url: AnyHttpUrl
    token: SecretStr | None = None
    ca_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0)
    backoff: Backoff = Backoff(initial_s=1.0, max_s=60.0)
    max_retry_after_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _https(self) -> EscalationConfig:
        if self.url.scheme != "https":
            raise ValueError("url: escalation needs an https endpoint")
        return self


class ForwardingConfig(StrictModel):
    """``ring_s``: seconds of raw samples kept per waveform channel for snapshots.
    ``settle_s``: how long after a window's pre-trigger horizon the uplink still waits for an
    alert to reach the store before it decides the window's detail is not needed. The uplink
    sends bulk records in journal order, so while any asset is in summary mode every bulk record
    (of full-mode assets too) reaches the server up to ``pre_trigger_s + settle_s`` late."""

    default: AssetForwarding = AssetForwarding()
    assets: dict[str, AssetForwarding] = Field(default_factory=dict)
    ring_s: float = Field(10.0, gt=0, le=600)
    settle_s: float = Field(5.0, ge=0, le=3600)
    escalation: EscalationConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """Each asset's table starts from the default's keys."""
        if not isinstance(data, dict):
            return data
        base, assets = data.get("default", {}), data.get("assets")
        if not isinstance(base, dict) or not isinstance(assets, dict):
            return data
        merged: dict[str, Any] = {}
        for name, a in assets.items():
            if not isinstance(a, dict):
                merged[name] = a
                continue
            m = {**base, **a}
            if isinstance(base.get("snapshot"), dict) and isinstance(a.get("snapshot"), dict):
                m["snapshot"] = {**base["snapshot"], **a["snapshot"]}
            merged[name] = m
        return {**data, "assets": merged}

    def for_asset(self, asset: str) -> AssetForwarding:
        return self.assets.get(asset, self.default)

    def summarised(self) -> bool:
        """Whether any asset is in summary mode."""
        return self.default.mode == "summary" or any(
            a.mode == "summary" for a in self.assets.values()
        )


def forwarding_errors(cfg: ForwardingConfig, assets: set[str]) -> list[tuple[str, str]]:
    """Cross-references: configured assets exist; snapshots fit the raw ring; escalation has an
    endpoint."""
    errors: list[tuple[str, str]] = []
    items: list[tuple[str, str | None, AssetForwarding]] = [
        ("forwarding.default", None, cfg.default)
    ]
    items += [(f"forwarding.assets.{n}", n, a) for n, a in cfg.assets.items()]
    for path, name, a in items:
        if name is not None and name not in assets:
            errors.append((path, f"unknown asset {name!r}"))
        if a.snapshot.enabled and a.snapshot.length_s > cfg.ring_s:
            errors.append(
                (f"{path}.snapshot.length_s", f"longer than forwarding.ring_s ({cfg.ring_s} s)")
            )
        if a.escalate and cfg.escalation is None:
            errors.append((f"{path}.escalate", "needs [forwarding.escalation]"))
    return errors
