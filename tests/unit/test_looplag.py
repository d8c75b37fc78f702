"""Loop-lag monitor: records how late its timer fires, logs only state changes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.core.clock import FakeClock
from gateway.runtime.looplag import LoopLagMonitor


class LateClock(FakeClock):
    """A fake clock whose sleeps overshoot by a set amount, like a blocked event loop."""

    def __init__(self, late_s: list[float]) -> None:
        super().__init__(auto_advance=True)
        self.late_s = late_s
        self.exhausted = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if not self.late_s:
            self.exhausted.set()
            await asyncio.Event().wait()  # stop here: the test is over
        await super().sleep(seconds + self.late_s.pop(0))


async def test_records_lag_and_logs_state_changes_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = LateClock([0.0, 0.8, 0.9, 0.01])
    mon = LoopLagMonitor(clock, interval_s=0.25, warn_s=0.5)
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(mon.run())
    await clock.exhausted.wait()
    task.cancel()
    assert mon.last_s == pytest.approx(0.01)
    assert mon.max_s == pytest.approx(0.9)
    assert mon.mean_s == pytest.approx((0.8 + 0.9 + 0.01) / 4)
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("lagging" in m for m in msgs) == 1
    assert sum("back to normal" in m for m in msgs) == 1
