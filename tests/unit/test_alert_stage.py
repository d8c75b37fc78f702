"""The alert stage between the scored and records queues: forwarding, transitions, ticks,
acknowledgement, drain on close."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.alerts.config import AlertsConfig
from gateway.alerts.engine import UnknownAlert
from gateway.alerts.stage import SAVE_INTERVAL_S, AlertStage, Record, Scored
from gateway.config.plant import Asset
from gateway.core.clock import FakeClock
from gateway.core.records import AlertEvent, AlertState, FeatureFrame, Score
from gateway.runtime.queues import BoundedQueue, QueueClosed

CFG = AlertsConfig.model_validate(
    {
        "tick_s": 1.0,
        "rules": {
            "anomaly": {
                "asset": "m1",
                "raise_level": 0.8,
                "clear_level": 0.5,
                "on_n": 1,
                "on_m": 1,
                "off_n": 1,
                "off_m": 1,
            },
            "stale": {
                "asset": "m1",
                "source": "sensor",
                "channel": "m1_temp",
                "condition": "stale",
                "stale_after_s": 3.0,
            },
            "down": {
                "asset": "m1",
                "source": "sensor",
                "channel": "m1_temp",
                "condition": "disconnected",
            },
        },
    }
)
ASSETS = {"m1": Asset(channels=["m1_temp"])}


def temp(clock: FakeClock, v: float) -> FeatureFrame:
    t = clock.now_ns()
    return FeatureFrame(
        "m1", "m1_temp", t, t, t, "s", ("value", "rate_per_min"), ("degC",) * 2, np.array([v, 0.0])
    )


async def drain(out: BoundedQueue[Record]) -> list[Record]:
    got: list[Record] = []
    while True:
        try:
            got += await out.get_many(100)
        except QueueClosed:
            return got


async def raised_alert(
    clock: FakeClock, state: Path | None = None
) -> tuple[AlertStage, BoundedQueue[Scored], BoundedQueue[Record], asyncio.Task[None], AlertEvent]:
    """A running stage (its ticker asleep) whose ``anomaly`` alert was just raised, the score
    that raised it taken from ``out``; returns the stage, its queues, its task and the raise."""
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 100)
    out: BoundedQueue[Record] = BoundedQueue("records", 100)
    stage = AlertStage(CFG, ASSETS, inp, out, clock, state_path=state)
    task = asyncio.create_task(stage.run())
    await clock.wait_for_sleepers(1)  # (the ticker)
    await inp.put(Score("m1", clock.now_ns(), "iforest", "7", 0.9, 0.8))
    await out.get()
    raised = await out.get()
    assert isinstance(raised, AlertEvent)
    return stage, inp, out, task, raised


async def test_stage_forwards_inputs_and_transitions_and_drains() -> None:
    clock = FakeClock()
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 100)
    out: BoundedQueue[Record] = BoundedQueue("records", 100)
    up = {"m1_temp": True}
    stage = AlertStage(CFG, ASSETS, inp, out, clock, lambda: dict(up))
    task = asyncio.create_task(stage.run())
    f = temp(clock, 20.0)
    s1 = Score("m1", clock.now_ns(), "iforest", "7", 0.9, 0.8)
    await inp.put(f)
    await inp.put(s1)
    first = [await out.get(), await out.get(), await out.get()]
    assert first[:2] == [f, s1]
    raised = first[2]
    assert isinstance(raised, AlertEvent)
    assert raised.state == AlertState.RAISED
    assert raised.rule == "anomaly"
    assert raised.model_version == "7"
    assert "iforest" in raised.message

    ack = await stage.acknowledge(raised.alert_id, by="operator")
    assert ack.state == AlertState.ACKNOWLEDGED
    assert await out.get() == ack
    with pytest.raises(UnknownAlert):
        await stage.acknowledge("nope@1")

    # the source goes down: the disconnected alert is raised on the next tick
    up["m1_temp"] = False
    await clock.wait_for_sleepers(1)
    clock.advance(1.0)
    down = await out.get()
    assert isinstance(down, AlertEvent)
    assert (down.rule, down.state, down.category) == ("down", AlertState.RAISED, "sensor")
    # no frame for 3 s: stale
    for _ in range(3):
        await clock.wait_for_sleepers(1)
        clock.advance(1.0)
    stale = await out.get()
    assert isinstance(stale, AlertEvent)
    assert (stale.rule, stale.state) == ("stale", AlertState.RAISED)

    await inp.put(Score("m1", clock.now_ns(), "iforest", "7", 0.1, 0.8))
    await inp.close()
    await task
    await out.close()
    rest = await drain(out)
    cleared = [r for r in rest if isinstance(r, AlertEvent)]
    assert [(c.rule, c.state) for c in cleared] == [("anomaly", AlertState.CLEARED)]
    assert "unacknowledged" not in cleared[0].message
    assert stage.events == 5


async def test_active_alerts_survive_a_restart_of_the_gateway(tmp_path: Path) -> None:
    """The active alerts are saved at each transition; a new stage (a restarted gateway) made
    from the same file carries on with them: no second raise, the same id when it clears."""
    state = tmp_path / "alerts-active.json"
    clock = FakeClock()
    stage, inp, _out, task, raised = await raised_alert(clock, state)
    ack = await stage.acknowledge(raised.alert_id, by="operator")
    await inp.close()
    await task  # the process dies here: only the file remains
    assert json.loads(state.read_text())["anomaly"]["alert_id"] == raised.alert_id

    inp2: BoundedQueue[Scored] = BoundedQueue("scored", 100)
    out2: BoundedQueue[Record] = BoundedQueue("records", 100)
    again = AlertStage(CFG, ASSETS, inp2, out2, clock, state_path=state)
    [(rule, st)] = again.engine.active()
    assert rule == "anomaly"
    assert st.active is not None
    assert st.active.acknowledged_ns == ack.ts_ns
    task2 = asyncio.create_task(again.run())
    await inp2.put(Score("m1", clock.now_ns(), "iforest", "7", 0.95, 0.8))  # still high
    await inp2.put(Score("m1", clock.now_ns(), "iforest", "7", 0.1, 0.8))  # clears
    await inp2.close()
    await task2
    await out2.close()
    events = [r for r in await drain(out2) if isinstance(r, AlertEvent)]
    assert [(e.alert_id, e.state) for e in events] == [(raised.alert_id, AlertState.CLEARED)]
    assert "unacknowledged" not in events[0].message
    assert json.loads(state.read_text()) == {}


async def test_transitions_are_saved_at_once_then_at_most_every_interval(tmp_path: Path) -> None:
    """A transition is written at once; one soon after it waits until ``SAVE_INTERVAL_S`` after
    that write (flapping rules cost a few writes a second); a new value alone writes nothing."""
    state = tmp_path / "alerts-active.json"
    clock = FakeClock()
    stage, inp, out, task, raised = await raised_alert(clock, state)
    await stage.state_saved()  # at once: the clock has not moved
    saved = json.loads(state.read_text())
    assert saved["anomaly"]["alert_id"] == raised.alert_id
    assert saved["anomaly"]["acknowledged_ns"] is None
    ack = await stage.acknowledge(raised.alert_id, by="operator")  # right after the raise
    await clock.wait_for_sleepers(2)  # the saver waits out the interval
    assert json.loads(state.read_text()) == saved
    clock.advance(SAVE_INTERVAL_S)
    await stage.state_saved()
    assert json.loads(state.read_text())["anomaly"]["acknowledged_ns"] == ack.ts_ns
    # no transition, no write: a new score changes only the alert's detail
    written = state.stat().st_mtime_ns, state.read_text()
    clock.advance(SAVE_INTERVAL_S)
    await inp.put(Score("m1", clock.now_ns(), "iforest", "7", 0.95, 0.8))
    await out.get()
    await stage.state_saved()
    assert (state.stat().st_mtime_ns, state.read_text()) == written
    await inp.close()
    await task
    assert json.loads(state.read_text())["anomaly"]["detail"] == "score 0.95"  # at the end


async def test_a_transition_waiting_for_its_write_is_written_at_close(tmp_path: Path) -> None:
    state = tmp_path / "alerts-active.json"
    clock = FakeClock()
    stage, inp, _out, task, _raised = await raised_alert(clock, state)
    await stage.state_saved()
    await inp.put(Score("m1", clock.now_ns(), "iforest", "7", 0.1, 0.8))  # clears at once
    await clock.wait_for_sleepers(2)
    await inp.close()
    await task  # the clock never reached the next write: the close writes it
    assert json.loads(state.read_text()) == {}


def test_a_damaged_alert_file_is_reported_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "alerts-active.json"
    state.write_text('{"anomaly": {"alert_id": "x"}}')  # no raised_ns, severity, ...
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 10)
    out: BoundedQueue[Record] = BoundedQueue("records", 10)
    stage = AlertStage(CFG, ASSETS, inp, out, FakeClock(), state_path=state)
    assert stage.engine.active() == []
    assert "cannot restore the active alerts" in caplog.text


async def test_a_second_acknowledgement_is_recorded_once() -> None:
    clock = FakeClock()
    stage, inp, out, task, raised = await raised_alert(clock)
    first = await stage.acknowledge(raised.alert_id, by="op1")
    again = await stage.acknowledge(raised.alert_id, by="op2")
    assert again == first  # the first acknowledgement stands
    await inp.close()
    await task
    await out.close()
    events = [r for r in await drain(out) if isinstance(r, AlertEvent)]
    assert [e.state for e in events] == [AlertState.ACKNOWLEDGED]
    assert events[0].message.startswith("acknowledged by op1")
    assert stage.events == 2  # raised, acknowledged


def test_an_alert_file_with_one_damaged_entry_restores_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "alerts-active.json"
    good = {
        "alert_id": "anomaly@1",
        "raised_ns": 1,
        "severity": 2,
        "acknowledged_ns": None,
        "acknowledged_by": "",
    }
    state.write_text(json.dumps({"anomaly": good, "stale": {**good, "severity": 9}}))
    inp: BoundedQueue[Scored] = BoundedQueue("scored", 10)
    out: BoundedQueue[Record] = BoundedQueue("records", 10)
    stage = AlertStage(CFG, ASSETS, inp, out, FakeClock(), state_path=state)
    assert stage.engine.active() == []  # as the log says: none restored
    assert "none restored" in caplog.text
