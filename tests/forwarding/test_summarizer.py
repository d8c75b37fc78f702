"""Summaries of one channel across a restart of the gateway and a change of feature names:
each part of an interval keeps its own point; whole intervals are stamped with their start."""

from __future__ import annotations

import numpy as np

from gateway.core.records import FeatureFrame
from gateway.forwarding.summary import Summarizer

T0 = 1_700_000_000_000_000_000  # a multiple of the 10 s interval
S = 1_000_000_000


def frame(t_s: float, value: float, names: tuple[str, ...] = ("rms",)) -> FeatureFrame:
    t = T0 + int(t_s * S)
    return FeatureFrame(
        "m1",
        "m1_vib",
        t,
        t + S // 10,
        t,
        "v1",
        names,
        ("g",) * len(names),
        np.full(len(names), value),
    )


def test_a_restart_mid_interval_never_overwrites_the_summary_of_its_first_part() -> None:
    before = Summarizer({"m1": 10.0})
    for t in range(10, 15):  # 10 s .. 14 s, then a clean stop
        assert before.add(frame(t, 100.0 if t == 12 else 1.0)) is None
    [flushed] = before.flush()
    assert flushed.ts_ns == T0 + 10 * S  # the interval's start
    after = Summarizer({"m1": 10.0})  # the next run goes on at 15 s
    rows = [r for t in range(15, 21) if (r := after.add(frame(t, 2.0))) is not None]
    [rest] = rows  # closed by the frame at 20 s
    assert rest.ts_ns == T0 + 15 * S  # its first frame's start: its own point
    assert rest.ts_ns != flushed.ts_ns
    assert flushed.payload["features"]["rms"]["max"] == 100.0  # (the spike is kept)
    [whole] = after.flush()
    assert whole.ts_ns == T0 + 20 * S  # an interval begun on a rollover: its start


def test_a_change_of_feature_names_mid_interval_keeps_both_parts() -> None:
    s = Summarizer({"m1": 10.0})
    s.add(frame(0, 1.0))  # (the first interval after start: stamped with its first frame)
    first = s.add(frame(10, 1.0))
    assert first is not None
    assert first.ts_ns == T0
    renamed = s.add(frame(13, 5.0, ("rms", "peak")))
    assert renamed is not None  # the part before the change
    assert renamed.ts_ns == T0 + 10 * S
    [after] = s.flush()
    assert after.ts_ns == T0 + 13 * S
    assert after.payload["features"]["peak"]["max"] == 5.0
