"""The store writer's encoding (``encode_records``) stores exactly what ``record_row`` then
``encode_rows`` store, for every record type, and readers get the features and units back."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.records import ActionRecord, AlertState, FeatureFrame, Quality, Score
from gateway.store import codec
from gateway.store.codec import StoreRecord, encode_records, record_row
from gateway.store.journal import EncodedRow, decode_payload, encode_rows
from tests.uplink.records import T0, alert, frame, score


def layout_frame(i: int, names: tuple[str, ...], units: tuple[str, ...]) -> FeatureFrame:
    values = np.array([float(i) + 0.25 * k for k in range(len(names))])
    values[1] = math.nan
    values[2] = math.inf
    return FeatureFrame(
        "m1", "m1_vib", T0 + i, T0 + i + 5, T0 + i + 9, "v2", names, units, values, Quality(i % 3)
    )


def test_every_record_type_is_stored_as_record_row_stores_it() -> None:
    names, units = ("rms", "peak", "kurtosis", "band_%1"), ("g", "g", "1", 'g"2')
    recs: list[StoreRecord] = [
        frame(1),
        frame(2, width=3),
        *(layout_frame(i, names, units) for i in range(3)),
        layout_frame(4, tuple(list(names)), tuple(list(units))),  # equal layout, other tuples
        score(3),
        Score("m1", T0, "m", "2", 7.5, 0.5, shadow=True),
        alert(4),
        alert(5, category="sensor"),
        ActionRecord("a1", "m1", "r", AlertState.RAISED, T0, "dev:1", 1.0, "written"),
    ]
    got = encode_records(recs)
    assert got == encode_rows([record_row(r) for r in recs])
    assert all(isinstance(r, EncodedRow) for r in got)
    assert [r.kind for r in got] == [
        *["feature"] * 6,
        "score",
        "score",
        "alert",
        "sensor",
        "action",
    ]
    pl = decode_payload(got[2].payload)
    assert pl["features"] == {"rms": 0.0, "peak": None, "kurtosis": None, "band_%1": 0.75}
    assert pl["units"] == dict(zip(names, units, strict=True))
    assert pl["quality"] == "good"
    assert decode_payload(got[3].payload)["quality"] == "uncertain"


def test_layouts_made_afresh_for_every_frame_keep_the_cache_bounded() -> None:
    recs = [
        layout_frame(i, tuple(f"f{k}" for k in range(4)), tuple(f"u{i}" for _ in range(4)))
        for i in range(3 * codec._LAYOUTS_MAX)
    ]
    got = encode_records(recs)
    assert len(codec._LAYOUTS) <= codec._LAYOUTS_MAX
    assert len(codec._BY_ID) <= codec._LAYOUTS_MAX
    assert [decode_payload(r.payload)["units"] for r in got] == [
        {f"f{k}": f"u{i}" for k in range(4)} for i in range(len(recs))
    ]


_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
_number = st.floats(width=64) | st.sampled_from([0.0, -0.0, 1e16, 1e-5, 5e-324, 0.1 + 0.2])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_name, _name, _number), max_size=8),
    st.sampled_from(["float64", "float32", "strided"]),
    st.sampled_from(list(Quality)),
    _name,
    st.integers(0, 2**63 - 1),
)
def test_any_frame_is_stored_as_record_row_stores_it(
    feats: list[tuple[str, str, float]], kind: str, quality: Quality, schema: str, ts: int
) -> None:
    """Whatever the names (repeated, empty, quoted, with ``%``), units, values (NaN, infinite,
    float32, not contiguous), quality and schema, the feature row ``encode_records`` stores is
    the one ``encode_rows(record_row(...))`` stores."""
    names = tuple(n for n, _, _ in feats)
    units = tuple(u for _, u, _ in feats)
    values = np.array([v for _, _, v in feats], dtype=np.float64)
    if kind == "float32":
        with np.errstate(over="ignore"):
            values = values.astype(np.float32)
    elif kind == "strided":
        values = np.repeat(values, 2)[::2]
    f = FeatureFrame("m1", "c", ts, ts, ts, schema, names, units, values, quality)
    assert encode_records([f, f]) == encode_rows([record_row(f)] * 2)
