"""Records to journal rows: one function per record type, ``record_row`` dispatches.

Kinds: ``feature`` (FeatureFrame), ``score`` (Score), ``alert`` (AlertEvent of category
``machine``) and ``sensor`` (AlertEvent of category ``sensor``). Non-finite feature values are
stored as JSON ``null`` (a value that could not be computed); the uplink leaves them out.

``encode_records`` is the store writer's path: records straight to rows as stored
(``EncodedRow``), without the ``Row``: feature rows compact (their values, with the id of their
layout of names and units: ``gateway.store.layouts``), any other row the same JSON
``encode_rows(record_row(r))`` gives. A reader gets ``record_row(r)``'s payload back either way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson

from gateway.core.records import ActionRecord, AlertEvent, FeatureFrame, Quality, Score
from gateway.store import layouts
from gateway.store.journal import EncodedRow, Row, encode_rows

StoreRecord = FeatureFrame | Score | AlertEvent | ActionRecord


_QUALITY = {q: q.name.lower() for q in Quality}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_F64, _F32 = np.dtype(np.float64), np.dtype(np.float32)


class _Layout:
    """A feature layout (names, units): its units object and that object's JSON, shared by the
    rows of that layout (rows are not modified once made), its id for compact rows (``None``:
    its rows are stored in full), and per (schema, quality) the head of its compact payload
    (``%`` the two timestamps) up to the values."""

    __slots__ = ("heads", "id", "units", "units_json")

    def __init__(self, names: tuple[str, ...], units: tuple[str, ...]) -> None:
        self.units = dict(zip(names, units, strict=True))
        self.units_json = orjson.Fragment(orjson.dumps(self.units))
        self.id = layouts.register(names, units)
        self.heads: dict[tuple[str, Quality], bytes] = {}

    def head(self, schema: str, quality: Quality) -> bytes:
        """``head % (end_ts_ns, gateway_ts_ns)``: the compact payload up to its values."""
        got = self.heads.get((schema, quality))
        if got is None:
            if len(self.heads) >= _LAYOUTS_MAX:
                self.heads.clear()
            got = self.heads[(schema, quality)] = (
                b'{"end_ts_ns":%%d,"gateway_ts_ns":%%d,"schema":%s,"quality":%s,'
                b'"layout":"%s","values":'
                % (
                    orjson.dumps(schema).replace(b"%", b"%%"),
                    orjson.dumps(_QUALITY[quality]),
                    str(self.id).encode(),
                )
            )
        return got


#: per feature layout (names, units); a gateway has a handful of layouts
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[str, ...]], _Layout] = {}
_LAYOUTS_MAX = 256  #: layouts made afresh for every frame: start over past this many
#: the same, by the identities of the tuples (frames of a channel share theirs), which it keeps
#: (so the identities stay theirs): a lookup that hashes no names
_BY_ID: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...], _Layout]] = {}


def _layout(names: tuple[str, ...], units: tuple[str, ...]) -> _Layout:
    known = _BY_ID.get((id(names), id(units)))
    if known is not None and known[0] is names and known[1] is units:
        return known[2]
    got = _LAYOUTS.get((names, units))
    if got is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        got = _LAYOUTS[(names, units)] = _Layout(names, units)
    if len(_BY_ID) >= _LAYOUTS_MAX:
        _BY_ID.clear()
    _BY_ID[(id(names), id(units))] = (names, units, got)
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
    payload = _frame_payload(f, features, _layout(f.names, f.units).units)
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
    """``f`` as a compact feature row (``gateway.store.layouts``; in full, as ``frame_row`` gives
    it, when its layout has no id): a reader gets ``frame_row(f)``'s payload back."""
    layout = _layout(f.names, f.units)
    v = f.values
    if layout.id is None:
        features = dict(zip(f.names, v.tolist(), strict=True))
        payload = orjson.dumps(_frame_payload(f, features, layout.units_json)).decode()
        return _new(EncodedRow, ("feature", f.start_ts_ns, f.asset, f.channel, "", payload))
    end, gw = f.end_ts_ns, f.gateway_ts_ns
    if v.ndim == 1 and type(end) is int and type(gw) is int:
        dt = v.dtype
        if dt is _F64 or dt is _F32:
            # orjson writes a float64 array's numbers as it writes the same Python floats
            # (float32 values are written as float64, as ``tolist`` gives them)
            try:
                text = orjson.dumps(v if dt is _F64 else v.astype(np.float64), option=_NUMPY)
            except TypeError:  # (not contiguous)
                pass
            else:
                head = layout.head(f.schema_version, f.quality) % (end, gw)
                text = b"%s%s}" % (head, text)
                return _new(
                    EncodedRow, ("feature", f.start_ts_ns, f.asset, f.channel, "", text.decode())
                )
    compact = {
        "end_ts_ns": end,
        "gateway_ts_ns": gw,
        "schema": f.schema_version,
        "quality": _QUALITY[f.quality],
        "layout": layout.id,
        "values": v.tolist(),
    }
    payload = orjson.dumps(compact).decode()
    return _new(EncodedRow, ("feature", f.start_ts_ns, f.asset, f.channel, "", payload))


def encode_score(s: Score) -> EncodedRow:
    """``score_row(s)`` as stored."""
    payload = orjson.dumps(_score_payload(s)).decode()
    return _new(EncodedRow, ("score", s.ts_ns, s.asset, s.channel, s.model_version, payload))


def encode_records(records: Iterable[StoreRecord | Row]) -> list[EncodedRow]:
    """``records`` as stored: features as compact rows (``encode_frame``), every other record as
    ``encode_rows([record_row(r)])`` (a ``Row`` among them as it is)."""
    out: list[EncodedRow] = []
    for r in records:
        if type(r) is FeatureFrame:
            out.append(encode_frame(r))
        elif type(r) is Score:
            out.append(encode_score(r))
        elif isinstance(r, Row):
            out += encode_rows([r])
        else:
            out += encode_rows([record_row(r)])
    return out
