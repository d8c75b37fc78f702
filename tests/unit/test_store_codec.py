"""The store writer's encoding (``encode_records``): a reader gets back ``record_row``'s payload
of every record type (features and units included), feature rows being stored compact (their
values and their layout's id) and every other row as ``encode_rows(record_row(...))`` stores it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.records import ActionRecord, AlertState, FeatureFrame, Quality, Score
from gateway.store import codec, layouts
from gateway.store.codec import StoreRecord, encode_records, record_row
from gateway.store.journal import EncodedRow, Journal, decode_payload, encode_rows
from tests.uplink.records import T0, alert, frame, score


def layout_frame(i: int, names: tuple[str, ...], units: tuple[str, ...]) -> FeatureFrame:
    values = np.array([float(i) + 0.25 * k for k in range(len(names))])
    values[1] = math.nan
    values[2] = math.inf
    return FeatureFrame(
        "m1", "m1_vib", T0 + i, T0 + i + 5, T0 + i + 9, "v2", names, units, values, Quality(i % 3)
    )


def as_read(row: EncodedRow) -> dict[str, object]:
    """The payload a reader gets back (compact feature payloads expanded)."""
    return layouts.expand(decode_payload(row.payload), layouts.REGISTERED)


def test_every_record_type_reads_back_as_its_record_row(tmp_path: Path) -> None:
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
    full = encode_rows([record_row(r) for r in recs])
    assert all(isinstance(r, EncodedRow) for r in got)
    assert [r.kind for r in got] == [
        *["feature"] * 6,
        "score",
        "score",
        "alert",
        "sensor",
        "action",
    ]
    assert got[6:] == full[6:]  # every other kind: as ``encode_rows`` stores it
    for g, f in zip(got[:6], full[:6], strict=True):
        assert g[:5] == f[:5]
        assert set(decode_payload(g.payload)) == {
            "end_ts_ns",
            "gateway_ts_ns",
            "schema",
            "quality",
            "layout",
            "values",
        }
        assert len(g.payload) < len(f.payload)
    # the same layout has the same id, whichever tuples hold it
    assert len({decode_payload(g.payload)["layout"] for g in got[2:6]}) == 1
    # stored, and read back after reopening: the full payloads
    j = Journal(tmp_path / "j.sqlite")
    j.append_encoded(got)
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    back = sorted(j.read("r", 100, "bulk") + j.read("r", 100, "priority"), key=lambda r: r.seq)
    j.close()
    assert [r.payload for r in back] == [decode_payload(f.payload) for f in full]
    pl = back[2].payload
    assert pl["features"] == {"rms": 0.0, "peak": None, "kurtosis": None, "band_%1": 0.75}
    assert pl["units"] == dict(zip(names, units, strict=True))
    assert pl["quality"] == "good"
    assert back[3].payload["quality"] == "uncertain"


def test_past_the_layout_limit_rows_are_stored_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layouts, "LAYOUTS_MAX", len(layouts.REGISTERED))
    f = layout_frame(0, ("never", "seen", "before"), ("g", "g", "g"))
    assert encode_records([f]) == encode_rows([record_row(f)])
    assert f.names not in {n for n, _ in layouts.REGISTERED.values()}


def test_layouts_made_afresh_for_every_frame_keep_the_cache_bounded() -> None:
    recs = [
        layout_frame(i, tuple(f"f{k}" for k in range(4)), tuple(f"u{i}" for _ in range(4)))
        for i in range(3 * codec._LAYOUTS_MAX)
    ]
    got = encode_records(recs)
    assert len(codec._LAYOUTS) <= codec._LAYOUTS_MAX
    assert len(codec._BY_ID) <= codec._LAYOUTS_MAX
    assert [as_read(r)["units"] for r in got] == [
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
    float32, not contiguous), quality and schema, the feature row ``encode_records`` stores reads
    back as the one ``encode_rows(record_row(...))`` stores."""
    names = tuple(n for n, _, _ in feats)
    units = tuple(u for _, u, _ in feats)
    values = np.array([v for _, _, v in feats], dtype=np.float64)
    if kind == "float32":
        with np.errstate(over="ignore"):
            values = values.astype(np.float32)
    elif kind == "strided":
        values = np.repeat(values, 2)[::2]
    f = FeatureFrame("m1", "c", ts, ts, ts, schema, names, units, values, quality)
    got = encode_records([f, f])
    assert got[0] == got[1]
    assert "layout" in decode_payload(got[0].payload)
    assert as_read(got[0]) == decode_payload(encode_rows([record_row(f)])[0].payload)
