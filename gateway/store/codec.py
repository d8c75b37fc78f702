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


#: the ``units`` JSON of each layout, by the identity of its (names, units) tuples (a stage
#: reuses its layout's tuples for every frame); each entry keeps its tuples, so ids stay valid
_UNITS_JSON: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...], orjson.Fragment]] = {}
_UNITS_JSON_MAX = 256


def _units_json(names: tuple[str, ...], units: tuple[str, ...]) -> orjson.Fragment:
    got = _UNITS_JSON.get((id(names), id(units)))
    if got is not None and got[0] is names and got[1] is units:
        return got[2]
    if len(_UNITS_JSON) >= _UNITS_JSON_MAX:  # layouts made afresh per frame: start over
        _UNITS_JSON.clear()
    frag = orjson.Fragment(orjson.dumps(_units(names, units)))
    _UNITS_JSON[(id(names), id(units))] = (names, units, frag)
    return frag


#: ``_new(EncodedRow, columns)`` makes a row without ``EncodedRow.__new__``'s Python call
_new = tuple.__new__


def encode_frame(f: FeatureFrame) -> EncodedRow:
    """``frame_row(f)`` as stored."""
    payload = orjson.dumps(
        {
            "end_ts_ns": f.end_ts_ns,
            "gateway_ts_ns": f.gateway_ts_ns,
            "schema": f.schema_version,
            "quality": _QUALITY[f.quality],
            "features": dict(zip(f.names, f.values.tolist(), strict=True)),
            "units": _units_json(f.names, f.units),
        }
    ).decode()
    return _new(EncodedRow, ("feature", f.start_ts_ns, f.asset, f.channel, "", payload))


def encode_score(s: Score) -> EncodedRow:
    """``score_row(s)`` as stored."""
    payload = orjson.dumps(
        {
            "model_id": s.model_id,
            "score": float(s.score),
            "threshold": float(s.threshold),
            "shadow": s.shadow,
        }
    ).decode()
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
