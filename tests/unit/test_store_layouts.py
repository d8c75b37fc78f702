"""Compact feature rows: the journal stores each layout (names, units) once, in the transaction of
the first rows after it was registered, and reads every feature row back in full, whether it was
written compact, in full, or by a version without the ``layouts`` table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gateway.core.records import FeatureFrame, Quality
from gateway.store import layouts
from gateway.store.codec import encode_records, frame_row
from gateway.store.journal import Journal, Row
from gateway.uplink.lineproto import stored_line, to_line

T0 = 1_700_000_000_000_000_000


def frame(i: int, names: tuple[str, ...], units: tuple[str, ...]) -> FeatureFrame:
    values = np.arange(len(names), dtype=np.float64) + i
    return FeatureFrame(
        "m1", "c1", T0 + i, T0 + i + 5, T0 + i + 9, "v2", names, units, values, Quality.GOOD
    )


def stored_layouts(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {k for (k,) in db.execute("SELECT id FROM layouts")}
    finally:
        db.close()


def test_rows_in_full_and_compact_rows_read_back_alike(tmp_path: Path) -> None:
    names, units = ("rms", "peak", "band_1_2hz_ms"), ("g", "g", "g2")
    frames = [frame(i, names, units) for i in range(4)]
    j = Journal(tmp_path / "j.sqlite")
    j.append([frame_row(f) for f in frames[:2]])  # in full (``Row``s)
    j.append_encoded(encode_records(frames[2:]))  # compact (the store writer's way)
    j.close()
    j = Journal(tmp_path / "j.sqlite")  # the layouts come back from the file
    got = j.read("s", 10)
    raw = j.read_stored("s", 10)
    j.close()
    assert [r.payload for r in got] == [
        {
            "end_ts_ns": f.end_ts_ns,
            "gateway_ts_ns": f.gateway_ts_ns,
            "schema": "v2",
            "quality": "good",
            "features": dict(zip(names, f.values.tolist(), strict=True)),
            "units": dict(zip(names, units, strict=True)),
        }
        for f in frames
    ]
    assert [b'"layout":' in t[6] for t in raw] == [False, False, True, True]
    assert len(raw[2][6]) < len(raw[0][6])


def test_a_layout_is_stored_with_the_first_rows_after_it_is_registered(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.append([Row("score", T0, "m1", "c1", {"score": 1.0})])
    f = frame(0, ("registered", "after", "opening"), ("u", "u", "u"))
    key = layouts.layout_id(f.names, f.units)
    assert key not in stored_layouts(path)
    rows = encode_records([f])  # registers the layout
    pages = int(j._db.execute("PRAGMA page_count").fetchone()[0])
    j.limit_pages(pages)  # a full disk: the append fails, the layout is not stored either
    with pytest.raises(sqlite3.OperationalError):
        j.append_encoded([rows[0]._replace(payload=rows[0].payload + " " * 100_000)])
    assert key not in stored_layouts(path)
    assert key not in j.layouts
    j.limit_pages(None)
    j.append_encoded(rows)  # now with its rows
    assert key in stored_layouts(path)
    assert j.layouts[key] == (f.names, f.units)
    assert j.read("s", 10)[-1].payload["features"] == {
        "registered": 0.0,
        "after": 1.0,
        "opening": 2.0,
    }
    j.close()


def test_a_store_without_the_layouts_table_is_read_and_written(tmp_path: Path) -> None:
    """A store written by a version that stored every feature row in full."""
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.append([frame_row(frame(0, ("rms",), ("g",)))])
    j.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE layouts")
    db.commit()
    db.close()
    j = Journal(path)
    assert j.layouts == {}
    j.append_encoded(encode_records([frame(1, ("rms",), ("g",))]))
    got = [r.payload["features"] for r in j.read("s", 10)]
    j.close()
    assert got == [{"rms": 0.0}, {"rms": 1.0}]


def test_a_payload_whose_layout_is_unknown_is_left_as_it_is() -> None:
    compact: dict[str, object] = {"quality": "good", "layout": "0" * 16, "values": [1.0]}
    assert layouts.expand(compact, {}) == compact
    known = {"0" * 16: (("a", "b"), ("g", "g"))}  # two names, one value: not this layout's
    assert layouts.expand(compact, known) == compact
    known = {"0" * 16: (("a",), ("g",))}
    assert layouts.expand(compact, known) == {
        "quality": "good",
        "features": {"a": 1.0},
        "units": {"a": "g"},
    }


def test_a_reader_opened_before_the_rows_were_appended_expands_them(tmp_path: Path) -> None:
    """Another connection to the same file (a tool reading a running gateway's store) learns the
    layouts stored after it opened."""
    path = tmp_path / "j.sqlite"
    writer, reader = Journal(path), Journal(path)
    f = frame(3, ("seen", "by", "the", "writer"), ("g", "g", "g", "g"))
    writer.append_encoded(encode_records([f]))
    (t,) = reader.read_stored("s", 10)
    line = stored_line(t, reader.layouts)
    (row,) = reader.read("s", 10)
    writer.close()
    reader.close()
    assert row.payload["features"] == {"seen": 3.0, "by": 4.0, "the": 5.0, "writer": 6.0}
    assert line == to_line(row).encode()
    assert b"seen=3.0,by=4.0,the=5.0,writer=6.0,quality=0i" in line


def test_past_the_limit_layouts_no_row_uses_are_dropped_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    used = [frame(i, (f"used{i}",), ("g",)) for i in range(3)]
    j.append_encoded(encode_records(used))
    unused = [layouts.register((f"unused{i}",), ("g",)) for i in range(3)]
    j.append([Row("score", T0, "m1", "c1", {"score": 1.0})])  # stores them, unused
    j.close()
    assert set(unused) <= stored_layouts(path)
    monkeypatch.setattr(layouts, "LAYOUTS_MAX", len(stored_layouts(path)) - 1)
    monkeypatch.setattr(layouts, "REGISTERED", {})  # (a new process)
    j = Journal(path)
    kept = stored_layouts(path)
    got = [r.payload["features"] for r in j.read("s", 10) if r.kind == "feature"]
    j.close()
    assert kept == {layouts.layout_id(f.names, f.units) for f in used}
    assert got == [{"used0": 0.0}, {"used1": 1.0}, {"used2": 2.0}]
