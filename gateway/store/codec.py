"""Records to journal rows: one function per record type, ``record_row`` dispatches.

Kinds: ``feature`` (FeatureFrame), ``score`` (Score), ``alert`` (AlertEvent of category
``machine``) and ``sensor`` (AlertEvent of category ``sensor``). Non-finite feature values are
stored as JSON ``null`` (a value that could not be computed); the uplink leaves them out.

``encode_records`` is the store writer's path: records straight to rows as stored
(``EncodedRow``), the same JSON ``encode_rows(record_row(r))`` gives, without the ``Row`` and
with each feature layout's ``units`` object serialized once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson

from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Quality, Score
from gateway.store.journal import EncodedRow, Row, encode_rows

StoreRecord = FeatureFrame | Score | AlertEvent | ActionRecord


_QUALITY = {q: q.name.lower() for q in Quality}
#: per feature layout (names, units): its units object and that object's JSON, shared by the
#: rows of that layout (rows are not modified once made); a gateway has a handful of layouts
_Layout = tuple[dict[str, str], orjson.Fragment]
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[str, ...]], _Layout] = {}
_LAYOUTS_MAX = 256  #: layouts made afresh for every frame: start over past this many


def _layout(names: tuple[str, ...], units: tuple[str, ...]) -> _Layout:
    got = _LAYOUTS.get((names, units))
    if got is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        obj = dict(zip(names, units, strict=True))
        got = _LAYOUTS[(names, units)] = (obj, orjson.Fragment(orjson.dumps(obj)))
    return got


def _frame_payload(f: FeatureFrame, features: object, units: object) -> dict[str, object]:
    """The payload of a feature row (one layout for both builders below)."""
    return {
        "end_ts_ns": f.end_ts_ns,
        "gateway_ts_ns": f.gateway_ts_ns,
        "schema": f.schema_version,
        "quality": _QUALITY[f.quality],
        "features": features,
        "units": units,
    }


def _score_payload(s: Score) -> dict[str, object]:
    return {
        "model_id": s.model_id,
        "score": float(s.score),
        "threshold": float(s.threshold),
        "shadow": s.shadow,
    }


def frame_row(f: FeatureFrame) -> Row:
    """A ``FeatureFrame`` as a ``feature`` row at its window start."""
    features = dict(zip(f.names, np.asarray(f.values).tolist(), strict=True))
    payload = _frame_payload(f, features, _layout(f.names, f.units)[0])
    return Row("feature", f.start_ts_ns, f.asset, f.channel, payload)


def score_row(s: Score) -> Row:
    """A ``Score`` as a ``score`` row."""
    return Row(
        kind="score",
        ts_ns=s.ts_ns,
        asset=s.asset,
        channel=s.channel,
        model_version=s.model_version,
        payload=_score_payload(s),
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


#: ``_new(EncodedRow, columns)`` makes a row without ``EncodedRow.__new__``'s Python call
_new = tuple.__new__


def encode_frame(f: FeatureFrame) -> EncodedRow:
    """``frame_row(f)`` as stored."""
    features = dict(zip(f.names, f.values.tolist(), strict=True))
    payload = orjson.dumps(_frame_payload(f, features, _layout(f.names, f.units)[1])).decode()
    return _new(EncodedRow, ("feature", f.start_ts_ns, f.asset, f.channel, "", payload))


def encode_score(s: Score) -> EncodedRow:
    """``score_row(s)`` as stored."""
    payload = orjson.dumps(_score_payload(s)).decode()
    return _new(EncodedRow, ("score", s.ts_ns, s.asset, s.channel, s.model_version, payload))


def encode_records(records: Iterable[StoreRecord]) -> list[EncodedRow]:
    """``encode_rows([record_row(r) for r in records])``, faster for features and scores."""
    out: list[EncodedRow] = []
    for r in records:
        if isinstance(r, FeatureFrame):
            out.append(encode_frame(r))
        elif isinstance(r, Score):
            out.append(encode_score(r))
        else:
            out += encode_rows([record_row(r)])
    return out
