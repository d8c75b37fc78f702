"""Event-loop lag: how late a timer fires. A stage that blocks the loop shows up here.

The monitor sleeps ``interval_s`` on the clock and records by how much the wake-up overshot;
``last_s``, ``max_s`` and a running mean are exposed in the pipeline status.
"""

from __future__ import annotations

import logging

from gateway.core.clock import Clock

log = logging.getLogger(__name__)


class LoopLagMonitor:
    name = "loop-lag"

    def __init__(self, clock: Clock, interval_s: float = 0.25, warn_s: float = 0.5) -> None:
        self.clock, self.interval_s, self.warn_s = clock, interval_s, warn_s
        self.last_s = 0.0
        self.max_s = 0.0
        self.samples = 0
        self._sum = 0.0
        self._lagging = False

    @property
    def mean_s(self) -> float:
        return self._sum / self.samples if self.samples else 0.0

    def record(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.last_s, self.max_s = lag_s, max(self.max_s, lag_s)
        self.samples += 1
        self._sum += lag_s
        lagging = lag_s >= self.warn_s
        if lagging != self._lagging:  # one line per state change
            if lagging:
                log.warning("event loop lagging: a timer fired %.3fs late", lag_s)
            else:
                log.info("event loop lag back to normal (%.3fs)", lag_s)
            self._lagging = lagging

    async def run(self) -> None:
        while True:
            t0 = self.clock.monotonic()
            await self.clock.sleep(self.interval_s)
            self.record(self.clock.monotonic() - t0 - self.interval_s)

    def status(self) -> dict[str, object]:
        return {"last_s": self.last_s, "max_s": self.max_s, "mean_s": self.mean_s}
