"""The unclean-stop marker and the health it implies; the store-full episode in health."""

from __future__ import annotations

from pathlib import Path

from gateway.runtime.health import assess
from gateway.runtime.runmark import RunMarker
from tests.unit.test_health import snap


def test_a_clean_stop_leaves_no_marker_and_the_next_start_is_clean(tmp_path: Path) -> None:
    m = RunMarker(tmp_path / "running")
    m.begin()
    assert (tmp_path / "running").exists()
    assert m.status(caught_up=False) == {"unclean_start": False, "recovered": True}
    m.end()
    assert not (tmp_path / "running").exists()
    again = RunMarker(tmp_path / "running")
    again.begin()
    assert not again.unclean_start


def test_a_left_marker_reports_an_unclean_start_until_the_backlog_is_resent(
    tmp_path: Path,
) -> None:
    RunMarker(tmp_path / "running").begin()  # killed: never ends
    m = RunMarker(tmp_path / "running")
    m.begin()
    run = m.status(caught_up=False)
    assert run == {"unclean_start": True, "recovered": False}
    h = assess(snap(run=run))
    assert h.state == "degraded"
    assert h.reasons == ("previous run ended without a clean stop: resending its backlog",)
    run = m.status(caught_up=True)
    assert run == {"unclean_start": True, "recovered": True}
    assert m.status(caught_up=False)["recovered"]  # latched: later backlogs are the uplink's
    assert assess(snap(run=run)).state == "ok"


def test_a_full_store_dropping_records_degrades_health() -> None:
    store = {"state": "ok", "evicting": True, "drops": {"score": 3, "feature": 40}}
    h = assess(snap(store=store))
    assert h.state == "degraded"
    assert h.reasons == ("store full: dropping unsent records (40 feature, 3 score)",)
    store["evicting"] = False  # below its limit again: the drops stay counted, health is ok
    assert assess(snap(store=store)).state == "ok"
