"""Waveform snapshots: raw samples around a window, with the context that triggered them.

Triggers (per asset with ``snapshot.enabled``): a raised machine alert, and a non-shadow score
inside ``snapshot.ambiguous_band`` (at most one per ``min_interval_s`` of source time). The
snapshot holds the last ``length_s`` seconds of each of the asset's waveform channels from the
raw rings (see ``ring.RawTap``), as ``int16`` scaled by ``scale`` (physical value = sample *
scale) or ``float32``, zlib-compressed and base64-encoded (``encode_channel``); compression runs
in a worker thread. A snapshot is a ``snapshot`` journal row (bulk lane) with payload:
``snapshot_id`` (``<asset>-<trigger>-<ts_ns>``, stable: the key for idempotent escalation),
``trigger`` (``alert`` | ``ambiguous``), ``alert_id``, ``score``, ``threshold``,
``model_version``, ``features`` (latest values per channel) and ``channels`` (per channel:
``start_ts_ns``, ``sample_rate_hz``, ``n``, ``dtype``, ``scale``, ``data``).
"""

from __future__ import annotations

import asyncio
import base64
import math
import zlib

import numpy as np

from gateway.core.records import AlertEvent, AlertState, FeatureFrame, FloatArray, Score
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.ring import RawTap
from gateway.store.journal import Row

ZLIB_LEVEL = 6


def encode_channel(samples: FloatArray, dtype: str) -> tuple[str, float]:
    """``(base64 of zlib of the samples as dtype, scale)``."""
    if dtype == "int16":
        peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
        scale = peak / 32767.0 if peak > 0 else 1.0
        raw = np.round(samples / scale).astype("<i2").tobytes()
    else:
        scale = 1.0
        raw = samples.astype("<f4").tobytes()
    return base64.b64encode(zlib.compress(raw, ZLIB_LEVEL)).decode(), scale


def decode_channel(data: str, dtype: str, scale: float) -> FloatArray:
    """The samples ``encode_channel`` encoded, as float32 in the channel's unit."""
    raw = zlib.decompress(base64.b64decode(data))
    arr = np.frombuffer(raw, dtype="<i2" if dtype == "int16" else "<f4").astype(np.float32)
    return (arr * np.float32(scale)).astype(np.float32)


def finite_features(frame: FeatureFrame | None) -> dict[str, float]:
    """A frame's finite feature values by name (empty without a frame)."""
    if frame is None:
        return {}
    return {
        n: v
        for n, v in zip(frame.names, np.asarray(frame.values).tolist(), strict=True)
        if math.isfinite(v)
    }


class SnapshotCapture:
    """Watches the records on their way to the store; ``capture`` returns snapshot rows.
    ``asset_channels``: every channel of each asset (raw samples come from those with a ring,
    i.e. the waveform channels; features from all)."""

    def __init__(
        self, cfg: ForwardingConfig, asset_channels: dict[str, list[str]], tap: RawTap
    ) -> None:
        self.cfg, self.asset_channels, self.tap = cfg, asset_channels, tap
        self._features: dict[tuple[str, str], FeatureFrame] = {}
        self._score: dict[str, Score] = {}
        self._last_ambiguous: dict[str, int] = {}
        self.captured: dict[str, int] = {}
        #: whether any asset can take a snapshot (if none, records need not be looked at)
        self.any_enabled = cfg.default.snapshot.enabled or any(
            a.snapshot.enabled for a in cfg.assets.values()
        )
        self._enabled: dict[str, bool] = {}  # by asset, filled as assets are seen

    def enabled(self, asset: str) -> bool:
        """Whether ``asset`` takes snapshots."""
        got = self._enabled.get(asset)
        if got is None:
            got = self._enabled[asset] = self.cfg.for_asset(asset).snapshot.enabled
        return got

    def _trigger(self, r: FeatureFrame | Score | object) -> tuple[str, str, int] | None:
        """``(asset, trigger, ts_ns)`` if ``r`` triggers a snapshot; keeps context otherwise
        (of assets that take snapshots: no other asset's context is ever read)."""
        if isinstance(r, FeatureFrame):
            if not self.enabled(r.asset):
                return None
            self._features[(r.asset, r.channel)] = r  # its dict is only built for a snapshot
            return None
        if isinstance(r, Score):
            if r.shadow or not self.enabled(r.asset):
                return None
            self._score[r.asset] = r
            snap = self.cfg.for_asset(r.asset).snapshot
            band = snap.ambiguous_band
            if not snap.enabled or band is None or not band[0] <= r.score <= band[1]:
                return None
            last = self._last_ambiguous.get(r.asset)
            if last is not None and r.ts_ns - last < int(snap.min_interval_s * 1e9):
                return None
            self._last_ambiguous[r.asset] = r.ts_ns
            return r.asset, "ambiguous", r.ts_ns
        if (
            isinstance(r, AlertEvent)
            and r.category == "machine"
            and r.state is AlertState.RAISED
            and self.enabled(r.asset)
        ):
            return r.asset, "alert", r.ts_ns
        return None

    async def capture(self, records: list[object]) -> list[Row]:
        """Snapshot rows for the triggers among ``records`` (in order)."""
        out: list[Row] = []
        if not self.any_enabled:
            return out
        for r in records:
            trig = self._trigger(r)
            if trig is not None:
                row = await self._snapshot(*trig, r)
                if row is not None:
                    out.append(row)
        return out

    async def _snapshot(self, asset: str, trigger: str, ts_ns: int, r: object) -> Row | None:
        snap = self.cfg.for_asset(asset).snapshot
        raw = {}
        for ch in self.asset_channels.get(asset, []):
            ring = self.tap.rings.get(ch)
            got = ring.last(snap.length_s) if ring is not None else None
            if got is not None:
                raw[ch] = got
        if not raw:
            return None
        loop = asyncio.get_running_loop()
        channels: dict[str, object] = {}
        for ch, (start, fs, samples) in raw.items():
            data, scale = await loop.run_in_executor(None, encode_channel, samples, snap.dtype)
            channels[ch] = {
                "start_ts_ns": start,
                "sample_rate_hz": fs,
                "n": len(samples),
                "dtype": snap.dtype,
                "scale": scale,
                "data": data,
            }
        score = r if isinstance(r, Score) else self._score.get(asset)
        alert_id = r.alert_id if isinstance(r, AlertEvent) else ""
        model_version = score.model_version if score is not None else ""
        if isinstance(r, AlertEvent) and r.model_version:
            model_version = r.model_version
        self.captured[asset] = self.captured.get(asset, 0) + 1
        return Row(
            kind="snapshot",
            ts_ns=ts_ns,
            asset=asset,
            channel="",
            model_version=model_version,
            payload={
                "snapshot_id": f"{asset}-{trigger}-{ts_ns}",
                "trigger": trigger,
                "alert_id": alert_id,
                "score": float(score.score) if score is not None else None,
                "threshold": float(score.threshold) if score is not None else None,
                "model_version": model_version,
                "features": {
                    ch: finite_features(self._features.get((asset, ch)))
                    for ch in self.asset_channels.get(asset, [])
                },
                "channels": channels,
            },
        )
