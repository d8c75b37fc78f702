"""Line protocol of records as stored (``stored_line``): the same line as ``to_line`` of the row
the journal reads back, for the store's own layouts (compact feature rows and rows in full:
encoded from the JSON text) and for every other payload (decoded first)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.records import FeatureFrame, Quality, Score
from gateway.store import layouts
from gateway.store.codec import encode_records, record_row
from gateway.store.journal import EncodedRow, Journal, Row, StoredRow, decode_payload
from gateway.uplink import lineproto
from gateway.uplink.lineproto import stored_line, to_line
from tests.uplink.records import T0, alert, frame, score

EDGE = (1e-05, 1e-07, 1e16, 1e20, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -2.5e-10)


def features(i: int, names: tuple[str, ...], values: list[float], **kw: object) -> FeatureFrame:
    return FeatureFrame(
        asset=str(kw.get("asset", "m1")),
        channel=str(kw.get("channel", "m1_vib")),
        start_ts_ns=T0 + i,
        end_ts_ns=T0 + i + 1,
        gateway_ts_ns=T0 + i + 2,
        schema_version=str(kw.get("schema", "v1")),
        names=names,
        units=("g",) * len(names),
        values=np.array(values, dtype=np.float64),
        quality=kw.get("quality", Quality.GOOD),  # type: ignore[arg-type]
    )


def scored(i: int, value: float, threshold: float = 0.5, **kw: object) -> Score:
    return Score(
        "m1",
        T0 + i,
        str(kw.get("model_id", "iforest")),
        "1.2.0",
        value,
        threshold,
        channel="m1_vib",
        shadow=bool(kw.get("shadow", False)),
    )


#: records in the store's own layouts (the text path), with edge values and odd strings
STORE_LAYOUT = [
    *(record_row(frame(i)) for i in range(8)),
    record_row(features(1, tuple(f"f{k}" for k in range(len(EDGE))), list(EDGE))),
    record_row(features(2, ("a", "b"), [1.0, 2.0], quality=Quality.UNCERTAIN)),
    record_row(features(3, ("a", "b"), [1.0, 2.0], quality=Quality.BAD)),
    record_row(features(4, ("a.b-c_D9",), [3.0], asset="pump 1", channel="a,b=c")),
    *(record_row(score(i)) for i in range(4)),
    record_row(scored(6, 1e-07, 1e20, shadow=True)),
    record_row(scored(7, -0.0, 5e-324, model_id="m-2.1")),
]
#: payloads the text path must leave to the general one (decoded first)
GENERAL = [
    record_row(features(5, ("x",), [1.0], schema='odd "schema" {x}')),  # a "{" before
    record_row(features(10, ("a b",), [1.0])),  # a name to escape
    record_row(features(11, ("x,y",), [1.0])),
    record_row(features(12, ("k=v",), [1.0])),
    record_row(features(13, ("a:1",), [2.0])),
    record_row(features(14, ("q}",), [2.0])),
    record_row(features(15, ("ok", "nan"), [1.0, math.nan])),  # stored as null
    record_row(features(16, ("inf",), [math.inf])),
    record_row(features(17, (), [])),  # no feature: quality only
    record_row(scored(20, math.nan)),  # no finite score
    record_row(scored(21, 1e308, 1e308)),  # finite values whose sum is not
    record_row(scored(22, 1.0, model_id='say "x" \\ y')),
    Row("feature", T0 + 30, "m1", "c", {"features": {"x": 1.5}, "quality": "good"}),
    Row("feature", T0 + 31, "m1", "c", {"features": {"n": 3, "t": True, "s": "x"}}),
    Row("feature", T0 + 32, "m1", "c", {"m": {"features": {"x": 1.0}}, "features": {"y": 2.0}}),
    Row("feature", T0 + 33, "m1", "c", {"quality": "good", "features": [1.0]}),
    Row("feature", T0 + 34, "m1", "c", {"quality": "Good", "features": {"x": 1.0}}),
    Row("score", T0 + 35, "m1", "c", {"model_id": "m", "score": 1, "threshold": 2}),
    Row("score", T0 + 36, "m1", "c", {"score": 1.5, "threshold": 2.5}),
    Row("summary", T0 + 37, "m1", "c", {"features": {"rms": {"min": 1.0, "max": 2.0}}}),
    Row("other", T0 + 38, "m1", "c", {"value": 4.5}),
    Row("other", T0 + 39, "m1", "c", {"text": "no numbers"}),
    record_row(alert(40)),
    record_row(alert(41, "sensor")),
]


def legacy(i: int, kind: str, payload: dict[str, object], sep: tuple[str, str]) -> EncodedRow:
    return (kind, T0 + i, "m1", "c", "", json.dumps(payload, separators=sep))


COMPACT, SPACED = (",", ":"), (", ", ": ")
#: payloads as written by versions that stored ``NaN``/``Infinity`` (``json.dumps``)
LEGACY = [
    legacy(50, "feature", {"quality": "good", "features": {"x": -math.inf}}, COMPACT),
    legacy(51, "feature", {"quality": "good", "features": {"x": math.nan, "y": 1.0}}, COMPACT),
    legacy(52, "feature", {"quality": "good", "features": {"x": 1e-05}}, SPACED),
    legacy(53, "feature", {"quality": "bad", "features": {"x": 1e-05}}, COMPACT),
    legacy(54, "score", {"model_id": "m", "score": math.inf, "threshold": 1.0, "shadow": False},
           COMPACT),
]  # fmt: skip


#: frames as the store writer writes them (compact rows): the text path, then the general one
COMPACT_TEXT = [
    *(frame(i) for i in range(8)),
    features(61, tuple(f"f{k}" for k in range(len(EDGE))), list(EDGE)),
    features(62, ("a", "b"), [1.0, 2.0], quality=Quality.UNCERTAIN, schema='odd "s" {x}'),
    features(63, ("a.b-c_D9",), [3.0], asset="pump 1", channel="a,b=c", quality=Quality.BAD),
]
COMPACT_GENERAL = [
    features(70, ("a b",), [1.0]),  # a name to escape
    features(71, ("x,y", "z"), [1.0, 2.0]),
    features(72, ("ok", "nan"), [1.0, math.nan]),  # stored as null
    features(73, ("inf",), [math.inf]),
    features(74, (), []),  # no feature: quality only
    features(75, ("r", "r", "s"), [1.0, 2.0, 3.0]),  # a repeated name: the last value, once
]


def stored(tmp_path: Path) -> tuple[list[StoredRow], dict[str, layouts.Layout]]:
    """The records above as stored, and the journal's layouts (read back after reopening)."""
    j = Journal(tmp_path / "j.sqlite")
    j.append(STORE_LAYOUT + GENERAL)
    j.append_encoded(LEGACY)
    j.append_encoded(encode_records(COMPACT_TEXT + COMPACT_GENERAL))
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    out = j.read_stored("s", 1000, "priority") + j.read_stored("s", 1000, "bulk")
    decoded = j.read("s", 1000, "priority") + j.read("s", 1000, "bulk")
    known = dict(j.layouts)
    j.close()
    assert [t[0] for t in out] == [r.seq for r in decoded]
    n = len(STORE_LAYOUT) + len(GENERAL) + len(LEGACY) + len(COMPACT_TEXT) + len(COMPACT_GENERAL)
    assert len(out) == n
    return out, known


def general(t: StoredRow, known: dict[str, layouts.Layout]) -> bytes | None:
    """``to_line`` of the row ``Journal.read`` gives (``None``: nothing to write)."""
    seq, kind, ts, asset, channel, mv, payload = t
    decoded = decode_payload(payload.decode())
    if kind == "feature":
        decoded = layouts.expand(decoded, known)
    try:
        return to_line(Row(kind, ts, asset, channel, decoded, mv, seq)).encode()
    except ValueError:
        return None


def same_point(a: bytes, b: bytes) -> bool:
    """Whether two lines write the same point: same series, time, fields and values (numbers
    compared as the server parses them: ``1e-05`` is ``0.00001``)."""
    (ha, fa, ta), (hb, fb, tb) = a.rsplit(b" ", 2), b.rsplit(b" ", 2)

    def values(fields: bytes) -> dict[bytes, float]:
        out = {}
        for part in fields.split(b","):
            k, v = part.split(b"=")
            out[k] = float(v.removesuffix(b"i"))
        return out

    return ha == hb and ta == tb and values(fa) == values(fb)


def test_a_stored_record_encodes_as_its_decoded_row(tmp_path: Path) -> None:
    """The same line; for payloads written by older versions, the same point (their numbers
    were written by ``json.dumps``, the line's as stored or by orjson)."""
    rows, known = stored(tmp_path)
    unencodable = 0
    for t in rows:
        want = general(t, known)
        if want is None:
            unencodable += 1
            with pytest.raises(ValueError, match="no field"):
                stored_line(t, known)
        elif t[2] in {r[1] for r in LEGACY}:
            assert same_point(stored_line(t, known), want), t
        else:
            assert stored_line(t, known) == want, t
    assert unencodable == 1  # ("no numbers")
    compact = [t for t in rows if b'"layout":' in t[6]]
    assert len(compact) == len(COMPACT_TEXT) + len(COMPACT_GENERAL)
    # the row read back is the frame's own: repeated names keep the last value, once
    (repeated,) = (t for t in compact if t[2] == T0 + 75)
    assert stored_line(repeated, known).startswith(b"feature,asset=m1,channel=m1_vib r=2.0,s=3.0,")


def test_the_store_layouts_are_encoded_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, known = stored(tmp_path)
    rows = [t for t in rows if general(t, known) is not None]
    decoded: list[str] = []

    def counting(text: str) -> dict[str, object]:
        decoded.append(text)
        return decode_payload(text)

    monkeypatch.setattr(lineproto, "decode_payload", counting)
    for t in rows:
        stored_line(t, known)
    # every store-layout record is encoded from its text (a compact legacy one with numbers
    # only too), every other payload is decoded
    assert len(decoded) == len(GENERAL) - 1 + len(LEGACY) - 1 + len(COMPACT_GENERAL)
    assert '"features":{"x":1e-05}' in "".join(t[6].decode() for t in rows)
    assert not any('"features":{"x":1e-05}' in d for d in decoded)


name = st.text(st.sampled_from('abcXYZ09_.- ,="\\é{}:'), min_size=1, max_size=6)
number = (
    st.floats(allow_nan=True, allow_infinity=True, width=64)
    | st.sampled_from(EDGE)
    | st.integers(-(2**53), 2**53).map(float)
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(name, number, min_size=1, max_size=6),
    st.sampled_from(list(Quality)),
    name,
    number,
    number,
    st.booleans(),
    name,
)
def test_any_record_the_store_encodes_gives_its_decoded_rows_line(
    feats: dict[str, float],
    quality: Quality,
    channel: str,
    value: float,
    threshold: float,
    shadow: bool,
    model_id: str,
) -> None:
    """Whatever the names, values and strings, a frame and a score as the store writes them
    (``encode_records``) give the line ``to_line`` gives from their decoded rows."""
    frame_ = features(1, tuple(feats), list(feats.values()), quality=quality, channel=channel)
    score_ = scored(2, value, threshold, shadow=shadow, model_id=model_id)
    for seq, e in enumerate(encode_records([frame_, score_]), 1):
        t: StoredRow = (
            seq,
            e.kind,
            e.ts_ns,
            e.asset,
            e.channel,
            e.model_version,
            e.payload.encode(),
        )
        want = general(t, layouts.REGISTERED)
        if want is None:  # nothing to write (no finite number): refused the same way
            with pytest.raises(ValueError, match="no field"):
                stored_line(t, layouts.REGISTERED)
        else:
            assert stored_line(t, layouts.REGISTERED) == want
