"""Records to journal rows (and back to dicts for display)."""

from __future__ import annotations

from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Score
from gateway.store.journal import Row


def frame_row(f: FeatureFrame) -> Row:
    """A ``FeatureFrame`` as a ``feature`` row; non-finite values are stored as JSON NaN."""
    return Row(
        kind="feature",
        ts_ns=f.start_ts_ns,
        asset=f.asset,
        channel=f.channel,
        payload={
            "end_ts_ns": f.end_ts_ns,
            "gateway_ts_ns": f.gateway_ts_ns,
            "schema": f.schema_version,
            "quality": f.quality.name.lower(),
            "features": dict(zip(f.names, (float(v) for v in f.values), strict=True)),
            "units": dict(zip(f.names, f.units, strict=True)),
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


def alert_row(e: AlertEvent) -> Row:
    """An ``AlertEvent`` (a lifecycle transition) as an ``alert`` row."""
    return Row(
        kind="alert",
        ts_ns=e.ts_ns,
        asset=e.asset,
        channel=e.channel,
        model_version=e.model_version,
        payload={
            "alert_id": e.alert_id,
            "rule": e.rule,
            "state": e.state.value,
            "severity": e.severity.name.lower(),
            "category": e.category,
            "message": e.message,
            "top_features": [[n, float(z)] for n, z in e.top_features],
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


def record_row(r: FeatureFrame | Score | AlertEvent | ActionRecord) -> Row:
    """Any record of the ``records`` queue as its journal row."""
    if isinstance(r, FeatureFrame):
        return frame_row(r)
    if isinstance(r, Score):
        return score_row(r)
    if isinstance(r, ActionRecord):
        return action_row(r)
    return alert_row(r)
