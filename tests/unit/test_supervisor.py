"""Supervisor: a crashing stage is restarted with growing backoff; cancellation stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.core.clock import FakeClock
from gateway.core.configbase import Backoff
from gateway.runtime.supervisor import Supervisor

NO_JITTER = Backoff(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.0)


class Flaky:
    """Raises ``failures`` times, then returns (a processor that drained its input)."""

    def __init__(self, failures: int, clock: FakeClock, run_time_s: float = 0.0) -> None:
        self.name = "flaky"
        self.failures, self.clock, self.run_time_s = failures, clock, run_time_s
        self.calls = 0

    async def run(self) -> None:
        self.calls += 1
        self.clock.advance(self.run_time_s)
        if self.calls <= self.failures:
            raise RuntimeError(f"boom {self.calls}")


async def test_crashing_stage_is_restarted_with_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(auto_advance=True)
    sup = Supervisor(clock, NO_JITTER, healthy_after_s=60)
    stage = Flaky(5, clock)
    with caplog.at_level(logging.ERROR):
        await sup.start(stage)
    rec = sup.records["flaky"]
    assert stage.calls == 6
    assert rec.restarts == 5
    assert list(rec.delays) == [0.5, 1.0, 2.0, 4.0, 4.0]  # doubles, capped at max_s
    assert rec.state == "finished"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 5
    assert "boom 1" in crashes[0].getMessage()
    assert crashes[0].exc_info is not None  # the traceback is logged with the crash


async def test_backoff_resets_after_a_healthy_run() -> None:
    clock = FakeClock(auto_advance=True)
    sup = Supervisor(clock, NO_JITTER, healthy_after_s=10)
    stage = Flaky(3, clock, run_time_s=20.0)  # each run lasts 20 s before crashing
    await sup.start(stage)
    assert list(sup.records["flaky"].delays) == [0.5, 0.5, 0.5]


async def test_jitter_stays_within_bounds() -> None:
    b = Backoff(initial_s=1.0, max_s=100.0, jitter=0.2)
    assert b.delay(3, 0.0) == pytest.approx(8.0 * 0.8)
    assert b.delay(3, 0.999999) == pytest.approx(8.0 * 1.2, rel=1e-5)
    assert b.delay(50, 0.5) == 100.0


async def test_cancel_stops_supervision_without_restart() -> None:
    clock = FakeClock()
    started = asyncio.Event()

    class Forever:
        name = "forever"
        runs = 0

        async def run(self) -> None:
            Forever.runs += 1
            started.set()
            await asyncio.Event().wait()

    sup = Supervisor(clock, NO_JITTER)
    task = sup.start(Forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Forever.runs == 1
    assert sup.records["forever"].state == "cancelled"


async def test_restart_waits_on_the_clock() -> None:
    """With a manual clock the restart happens only once the backoff delay has elapsed."""
    clock = FakeClock()
    sup = Supervisor(clock, NO_JITTER)
    stage = Flaky(1, clock)
    task = sup.start(stage)
    await clock.wait_for_sleepers(1)
    assert stage.calls == 1
    clock.advance(0.4)
    await asyncio.sleep(0)
    assert stage.calls == 1  # 0.4 s < 0.5 s backoff
    clock.advance(0.1)
    await task
    assert stage.calls == 2
