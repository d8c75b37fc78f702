"""Records to journal rows: one function per record type, ``record_row`` dispatches.

Kinds: ``feature`` (FeatureFrame), ``score`` (Score), ``alert`` (AlertEvent of category
``machine``) and ``sensor`` (AlertEvent of category ``sensor``). Non-finite feature values are
stored as JSON ``null`` (a value that could not be computed); the uplink leaves them out.
"""

from __future__ import annotations

import numpy as np

from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Quality, Score
from gateway.store.journal import Row

StoreRecord = FeatureFrame | Score | AlertEvent | ActionRecord


_QUALITY = {q: q.name.lower() for q in Quality}
#: the units object of each feature layout, shared by the rows of that layout (rows are not
#: modified once made; a gateway has a handful of layouts)
_UNITS: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, str]] = {}


def _units(names: tuple[str, ...], units: tuple[str, ...]) -> dict[str, str]:
    got = _UNITS.get((names, units))
    if got is None:
        got = _UNITS[(names, units)] = dict(zip(names, units, strict=True))
    return got


def frame_row(f: FeatureFrame) -> Row:
    """A ``FeatureFrame`` as a ``feature`` row at its window start."""
    return Row(
        "feature",
        f.start_ts_ns,
        f.asset,
        f.channel,
        {
            "end_ts_ns": f.end_ts_ns,
            "gateway_ts_ns": f.gateway_ts_ns,
            "schema": f.schema_version,
            "quality": _QUALITY[f.quality],
            "features": dict(zip(f.names, np.asarray(f.values).tolist(), strict=True)),
            "units": _units(f.names, f.units),
        },
    )


def score_row(s: Score) -> Row:
    """A ``Score`` as a ``score`` row."""
    return Row(
        kind="score",
        ts_ns=s.ts_ns,
        asset=s.asset,
        channel=s.channel,
        model_version=s.model_version,
        payload={
            "model_id": s.model_id,
            "score": float(s.score),
            "threshold": float(s.threshold),
            "shadow": s.shadow,
        },
    )


def alert_row(a: AlertEvent) -> Row:
    """An ``AlertEvent`` as an ``alert`` row, or a ``sensor`` row for sensor-health alerts."""
    return Row(
        kind="sensor" if a.category == "sensor" else "alert",
        ts_ns=a.ts_ns,
        asset=a.asset,
        channel=a.channel,
        model_version=a.model_version,
        payload={
            "alert_id": a.alert_id,
            "rule": a.rule,
            "state": a.state.value,
            "severity": int(a.severity),
            "message": a.message,
            "top_features": [[n, float(v)] for n, v in a.top_features],
        },
    )


def action_row(a: ActionRecord) -> Row:
    """An ``ActionRecord`` (audit of an alert action) as an ``action`` row."""
    return Row(
        kind="action",
        ts_ns=a.ts_ns,
        asset=a.asset,
        channel="",
        payload={
            "alert_id": a.alert_id,
            "rule": a.rule,
            "transition": a.transition.value,
            "target": a.target,
            "value": a.value,
            "outcome": a.outcome,
            "detail": a.detail,
        },
    )


def record_row(r: StoreRecord) -> Row:
    """Any record the store accepts, as its row."""
    if isinstance(r, FeatureFrame):
        return frame_row(r)
    if isinstance(r, Score):
        return score_row(r)
    if isinstance(r, ActionRecord):
        return action_row(r)
    return alert_row(r)
