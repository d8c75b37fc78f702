"""Journal rows to InfluxDB line protocol: one measurement per record kind.

A point's series key (measurement + tags) and timestamp depend only on the record, so sending a
record twice writes the same point twice and the server keeps one (an idempotent replay).

- ``feature``: tags asset, channel; fields the feature values (non-finite ones left out) and
  ``quality`` (0 good, 1 uncertain, 2 bad), in the record's order; time = window start.
- ``score``: tags asset, channel, model_version, model_id (and ``shadow=true`` for shadow
  scores); fields ``score`` and ``threshold``.
- ``summary``: tags asset, channel; fields ``<feature>_<min|mean|max|last>`` and ``frames``
  (int); time = the interval's start.
- ``snapshot`` (raw samples): never encoded (``ValueError``): raw data does not go to a
  time-series server.
- ``verdict`` (an escalation endpoint's answer): tags asset, model_version, alert_id,
  snapshot_id; fields ``verdict`` (string) and ``confidence``.
- ``alert`` / ``sensor``: tags asset, channel, model_version, rule, alert_id, state; fields
  ``severity`` (int), ``state_code`` (1 raised, 2 acknowledged, 3 cleared), ``message``.
- ``action`` (the audit of an alert action): tags asset, rule, alert_id, transition, outcome;
  fields ``value``, ``target`` and ``detail`` (strings).
Empty tag values are left out (line protocol has no empty tags).
Written here rather than with ``influxdb_client.Point``: tags are sorted (fields of other kinds
too), floats are written in their shortest round-trip form (by orjson, in C: ten times faster
than ``repr`` on 17-digit values; e.g. ``1e-5`` as ``0.00001``, same value), and it is many times
faster on the drain path. Feature records whose feature names need no escaping and whose values
are all numbers (the usual case) are encoded in one pass over their JSON form.

``stored_line`` encodes a record as the journal stores it (its payload's JSON bytes, not
decoded): feature and score payloads in the store's own layouts (compact feature rows with the
journal's ``layouts``, and feature rows in full) are turned into their line by matching and
rewriting the JSON text (the same line ``to_line`` makes of the row ``Journal.read`` gives, as
bytes, at a fraction of the cost of decoding the payload); any other payload is decoded (a
compact one expanded) and given to ``to_line``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache

import orjson

from gateway.store import layouts as layouts_
from gateway.store.journal import Row, StoredRow, decode_payload
from gateway.store.layouts import Layout

QUALITY = {"good": 0, "uncertain": 1, "bad": 2}
STATE_CODE = {"raised": 1, "acknowledged": 2, "cleared": 3}
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\\": "\\\\"})
_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\\": "\\\\"})
_STR = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})
#: a name that needs no escaping in line protocol nor in JSON
_PLAIN = re.compile(r"[A-Za-z0-9_.-]+")
#: a JSON member whose value is not a number (null, true, false, a string, array or object)
_NOT_NUMBER = re.compile(rb":[^-0-9]")
#: JSON ``{"a":1.5,"b":2.0}`` -> line protocol fields ``a=1.5,b=2.0`` (with plain names)
_JSON_COLON = bytes.maketrans(b":", b"=")
_JSON_DELETE = b'"{}'


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@lru_cache(maxsize=4096)
def _key(s: str) -> str:
    """A tag key, tag value or field key, escaped (names repeat: cached)."""
    return s.translate(_KEY)


def _float(v: float) -> str:
    """A finite float, shortest round-trip form."""
    return orjson.dumps(v).decode()


def _field(v: float | int | str) -> str:
    if isinstance(v, str):
        return '"' + v.translate(_STR) + '"'
    if isinstance(v, int):
        return f"{v}i"
    return _float(v)


@lru_cache(maxsize=1024)
def _plain(names: tuple[str, ...]) -> bool:
    return all(_PLAIN.fullmatch(n) for n in names)


def _plain_fields(feats: dict[str, object]) -> str | None:
    """``feats`` as line-protocol fields in one pass, or ``None`` when a name needs escaping or
    a value is not a finite number (the general path handles those)."""
    if not feats or not _plain(tuple(feats)):
        return None
    try:
        text = orjson.dumps(feats)  # (non-finite floats become null)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if _NOT_NUMBER.search(text):
        return None
    return text.translate(_JSON_COLON, _JSON_DELETE).decode()


@lru_cache(maxsize=4096)
def _feature_head(asset: str, channel: str, model_version: str) -> str:
    tags = {"asset": asset, "channel": channel, "model_version": model_version}
    return "feature" + "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v)


@lru_cache(maxsize=4096)
def _score_head(asset: str, channel: str, model_version: str, model_id: str, shadow: bool) -> str:
    tags = {"asset": asset, "channel": channel, "model_version": model_version}
    tags["model_id"] = model_id
    if shadow:
        tags["shadow"] = "true"
    return "score" + "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v)


def _feature_line(r: Row) -> str:
    """The hot path: a feature record (fields in the record's own order)."""
    pl = r.payload
    feats = pl.get("features")
    if not isinstance(feats, dict):
        feats = {}
    quality = f"quality={QUALITY.get(str(pl.get('quality')), 2)}i"
    fields = _plain_fields(feats)
    if fields is None:
        parts = [
            f"{_key(str(k))}={_float(f)}" for k, v in feats.items() if (f := _num(v)) is not None
        ]
        parts.append(quality)
        fields = ",".join(parts)
    else:
        fields += "," + quality
    head = _feature_head(r.asset, r.channel, r.model_version)
    return f"{head} {fields} {r.ts_ns}"


def _score_line(r: Row) -> str | None:
    """The hot path of scores; ``None`` when a value is missing or not a finite float."""
    pl = r.payload
    s, t = pl.get("score"), pl.get("threshold")
    if type(s) is not float or type(t) is not float or not math.isfinite(s + t):
        return None
    head = _score_head(
        r.asset, r.channel, r.model_version, str(pl.get("model_id", "")), bool(pl.get("shadow"))
    )
    return f"{head} score={_float(s)},threshold={_float(t)} {r.ts_ns}"


def to_line(r: Row) -> str:
    """The line for ``r`` (no trailing newline). ``ValueError`` if it has no field to write."""
    if r.kind == "feature":
        return _feature_line(r)
    if r.kind == "score":
        line = _score_line(r)
        if line is not None:
            return line
    tags = {"asset": r.asset, "channel": r.channel, "model_version": r.model_version}
    fields: dict[str, float | int | str] = {}
    pl = r.payload
    if r.kind == "score":  # (a missing or non-finite value)
        tags["model_id"] = str(pl.get("model_id", ""))
        if pl.get("shadow"):
            tags["shadow"] = "true"
        for k in ("score", "threshold"):
            f = _num(pl.get(k))
            if f is not None:
                fields[k] = f
    elif r.kind == "summary":
        feats = pl.get("features")
        for name, stats in (feats if isinstance(feats, dict) else {}).items():
            if isinstance(stats, dict):
                for stat, v in stats.items():
                    f = _num(v)
                    if f is not None:
                        fields[f"{name}_{stat}"] = f
        n = pl.get("frames")
        fields["frames"] = int(n) if isinstance(n, int) else 0
    elif r.kind == "verdict":
        tags.update(
            alert_id=str(pl.get("alert_id", "")), snapshot_id=str(pl.get("snapshot_id", ""))
        )
        fields["verdict"] = str(pl.get("verdict", ""))
        conf = _num(pl.get("confidence"))
        if conf is not None:
            fields["confidence"] = conf
    elif r.kind == "snapshot":
        raise ValueError(f"record {r.seq}: snapshots are not sent to time-series servers")
    elif r.kind in ("alert", "sensor"):
        state = str(pl.get("state", ""))
        tags.update(rule=str(pl.get("rule", "")), alert_id=str(pl.get("alert_id", "")), state=state)
        sev = pl.get("severity")
        fields["severity"] = int(sev) if isinstance(sev, int) else 0
        fields["state_code"] = STATE_CODE.get(state, 0)
        fields["message"] = str(pl.get("message", ""))
    elif r.kind == "action":
        tags.update(
            rule=str(pl.get("rule", "")),
            alert_id=str(pl.get("alert_id", "")),
            transition=str(pl.get("transition", "")),
            outcome=str(pl.get("outcome", "")),
        )
        value = _num(pl.get("value"))
        if value is not None:
            fields["value"] = value
        fields["target"] = str(pl.get("target", ""))
        fields["detail"] = str(pl.get("detail", ""))
    else:
        for k, v in pl.items():
            f = _num(v)
            if f is not None:
                fields[k] = f
    if not fields:
        raise ValueError(f"record {r.seq} ({r.kind}) has no field to write")
    head = r.kind.translate(_MEAS) + "".join(
        f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v
    )
    body = ",".join(f"{_key(k)}={_field(v)}" for k, v in sorted(fields.items()))
    return f"{head} {body} {r.ts_ns}"


# -- records as stored ---------------------------------------------------------------------------

#: a feature payload's ``"features"`` member whose names are plain and whose values are numbers
#: (``-?digit...``: not null, strings, objects, nor ``NaN``/``Infinity`` of older versions),
#: matched where it starts; group 1 is its members
_STORED_FEATURES = re.compile(
    rb'"features":\{((?:"[A-Za-z0-9_.-]++":-?+[0-9][0-9.eE+-]*+,)*+'
    rb'"[A-Za-z0-9_.-]++":-?+[0-9][0-9.eE+-]*+)\}'
)
_STORED_QUALITY = re.compile(rb'"quality":"([a-z]*)"')
#: a JSON number that decodes to a float (a fraction or an exponent), as orjson writes floats
_FLOAT_RE = rb"-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)"
#: a score payload in the store's layout (``gateway.store.codec.score_row``)
_STORED_SCORE = re.compile(
    rb'\{"model_id":"([^"\\]*)","score":('
    + _FLOAT_RE
    + rb'),"threshold":('
    + _FLOAT_RE
    + rb'),"shadow":(true|false)\}'
)
#: a compact feature payload (``gateway.store.layouts``) up to its values: groups quality and
#: layout id (its values are checked apart: a regular expression is slow on them)
_STORED_COMPACT = re.compile(
    rb'\{"end_ts_ns":-?[0-9]++,"gateway_ts_ns":-?[0-9]++,"schema":"(?:[^"\\]|\\.)*+",'
    rb'"quality":"([a-z]*)","layout":"([0-9a-f]++)","values":\['
)
_NUMBER_BYTES = b"0123456789.eE+-,"  #: (and commas)
#: per layout id: the field keys of its values (``b"name="``, then ``b",name="`` for each
#: other name), or ``None`` when a name needs escaping or repeats (the general path decides)
_Keys = tuple[bytes, tuple[bytes, ...]]
_COMPACT_KEYS: dict[bytes, _Keys | None] = {}
_COMPACT_KEYS_MAX = 4096
_QUALITY_FIELD = {k.encode(): f",quality={v}i ".encode() for k, v in QUALITY.items()}
_QUALITY_UNKNOWN = f",quality={QUALITY['bad']}i ".encode()
_JSON_TO_FIELDS = bytes.maketrans(b":", b"=")


@lru_cache(maxsize=4096)
def _feature_head_b(asset: str, channel: str, model_version: str) -> bytes:
    return _feature_head(asset, channel, model_version).encode() + b" "


@lru_cache(maxsize=4096)
def _score_head_b(
    asset: str, channel: str, model_version: str, model_id: bytes, shadow: bytes
) -> bytes:
    head = _score_head(asset, channel, model_version, model_id.decode(), shadow == b"true")
    return head.encode() + b" score="


def _stored_feature(asset: str, channel: str, mv: str, ts_ns: int, p: bytes) -> bytes | None:
    """The line of a stored feature payload, or ``None`` unless its features are plain numbers
    at the top level (then the general path decides)."""
    i = p.find(b'"features":{')
    if i < 0 or p.find(b"{", 1, i) >= 0:  # (a "{" before it: "features" may be nested)
        return None
    m = _STORED_FEATURES.match(p, i)
    q = _STORED_QUALITY.search(p, 1, i)  # (before "features": top level too)
    if m is None or q is None:
        return None
    fields = m[1].translate(_JSON_TO_FIELDS, b'"')
    quality = _QUALITY_FIELD.get(q[1], _QUALITY_UNKNOWN)
    return b"%s%s%s%d" % (_feature_head_b(asset, channel, mv), fields, quality, ts_ns)


def _compact_keys(key: bytes, known: Mapping[str, Layout]) -> _Keys | None:
    got = _COMPACT_KEYS.get(key, False)
    if got is False:
        layout = known.get(key.decode())
        if layout is None:
            return None  # (not cached: the journal may know it later)
        names = layout[0]
        got = None
        if names and _plain(names) and len(set(names)) == len(names):
            got = (names[0].encode() + b"=", tuple(b",%s=" % n.encode() for n in names[1:]))
        if len(_COMPACT_KEYS) >= _COMPACT_KEYS_MAX:
            _COMPACT_KEYS.clear()
        _COMPACT_KEYS[key] = got
    return got  # type: ignore[return-value]


def _stored_compact(
    asset: str, channel: str, mv: str, ts_ns: int, p: bytes, known: Mapping[str, Layout]
) -> bytes | None:
    """The line of a compact feature payload, or ``None`` unless its values are all numbers (as
    JSON writers write them: the text is copied) and its layout's names are plain and distinct
    (then the general path decides)."""
    m = _STORED_COMPACT.match(p)
    if m is None or not p.endswith(b"]}"):
        return None
    keys = _compact_keys(m[2], known)
    if keys is None:
        return None
    first, rest = keys
    values = p[m.end() : -2]
    if (
        values.count(b",") != len(rest)
        or values.translate(None, _NUMBER_BYTES)  # null, strings, arrays...
        or not values
        or values.startswith(b",")
        or values.endswith(b",")
        or b",," in values
    ):
        return None
    fields = first + values.replace(b",", b"%s") % rest  # (numbers hold no "%")
    quality = _QUALITY_FIELD.get(m[1], _QUALITY_UNKNOWN)
    return b"%s%s%s%d" % (_feature_head_b(asset, channel, mv), fields, quality, ts_ns)


def _stored_score(asset: str, channel: str, mv: str, ts_ns: int, p: bytes) -> bytes | None:
    m = _STORED_SCORE.fullmatch(p)
    if m is None or not math.isfinite(float(m[2]) + float(m[3])):
        return None
    head = _score_head_b(asset, channel, mv, m[1], m[4])
    return b"%s%s,threshold=%s %d" % (head, m[2], m[3], ts_ns)


def stored_line(t: StoredRow, layouts: Mapping[str, Layout]) -> bytes:
    """``to_line`` of a stored record as ``Journal.read`` gives it, UTF-8 encoded (``ValueError``
    as there); ``layouts`` are the journal's (``Journal.layouts``)."""
    seq, kind, ts_ns, asset, channel, mv, payload = t
    line = None
    if kind == "feature":
        if b'"layout":' in payload:
            line = _stored_compact(asset, channel, mv, ts_ns, payload, layouts)
        else:
            line = _stored_feature(asset, channel, mv, ts_ns, payload)
    elif kind == "score":
        line = _stored_score(asset, channel, mv, ts_ns, payload)
    if line is not None:
        return line
    decoded = decode_payload(payload.decode())
    if kind == "feature" and "layout" in decoded:
        decoded = layouts_.expand(decoded, layouts)
    return to_line(Row(kind, ts_ns, asset, channel, decoded, mv, seq)).encode()
