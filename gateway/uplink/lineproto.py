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
Empty tag values are left out (line protocol has no empty tags).
Written here rather than with ``influxdb_client.Point``: tags are sorted (fields of other kinds
too), floats use Python's shortest round-trip repr, and it is several times faster on the drain
path.
"""

from __future__ import annotations

import math
from functools import lru_cache

from gateway.store.journal import Row

QUALITY = {"good": 0, "uncertain": 1, "bad": 2}
STATE_CODE = {"raised": 1, "acknowledged": 2, "cleared": 3}
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\\": "\\\\"})
_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\\": "\\\\"})
_STR = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@lru_cache(maxsize=4096)
def _key(s: str) -> str:
    """A tag key, tag value or field key, escaped (names repeat: cached)."""
    return s.translate(_KEY)


def _field(v: float | int | str) -> str:
    if isinstance(v, str):
        return '"' + v.translate(_STR) + '"'
    if isinstance(v, int):
        return f"{v}i"
    return repr(v)


@lru_cache(maxsize=4096)
def _feature_head(asset: str, channel: str, model_version: str) -> str:
    tags = {"asset": asset, "channel": channel, "model_version": model_version}
    return "feature" + "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v)


def _feature_line(r: Row) -> str:
    """The hot path: a feature record (fields in the record's own order)."""
    feats = r.payload.get("features")
    if not isinstance(feats, dict):
        feats = {}
    isfinite = math.isfinite
    parts = [
        f"{_key(k)}={v!r}" if type(v) is float else f"{_key(str(k))}={_num(v)!r}"
        for k, v in feats.items()
        if (type(v) is float and isfinite(v)) or _num(v) is not None
    ]
    parts.append(f"quality={QUALITY.get(str(r.payload.get('quality')), 2)}i")
    head = _feature_head(r.asset, r.channel, r.model_version)
    return f"{head} {','.join(parts)} {r.ts_ns}"


def to_line(r: Row) -> str:
    """The line for ``r`` (no trailing newline). ``ValueError`` if it has no field to write."""
    if r.kind == "feature":
        return _feature_line(r)
    tags = {"asset": r.asset, "channel": r.channel, "model_version": r.model_version}
    fields: dict[str, float | int | str] = {}
    pl = r.payload
    if r.kind == "feature":
        feats = pl.get("features", {})
        if isinstance(feats, dict):
            isfinite = math.isfinite
            for name, v in feats.items():
                if type(v) is float and isfinite(v):  # (the hot path: no conversion)
                    fields[name] = v
                else:
                    f = _num(v)
                    if f is not None:
                        fields[str(name)] = f
        fields["quality"] = QUALITY.get(str(pl.get("quality")), 2)
    elif r.kind == "score":
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
    body = ",".join(
        f"{_key(k)}={v!r}" if type(v) is float else f"{_key(k)}={_field(v)}"
        for k, v in sorted(fields.items())
    )
    return f"{head} {body} {r.ts_ns}"
