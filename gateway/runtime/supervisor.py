"""Supervision: run each stage in its own task and restart it when it crashes.

A crash (any exception escaping ``Stage.run`` other than cancellation) is logged with its
traceback once, then the stage is restarted after an exponential backoff with jitter. A stage that
ran for ``healthy_after_s`` before crashing starts again from the initial delay. A stage whose
``run`` returns is finished (a processor that drained its input) and is not restarted.
This boundary is the one place where any exception is caught: nothing dies silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.core.clock import Clock
from gateway.core.configbase import Backoff
from gateway.core.stages import Stage

log = logging.getLogger(__name__)


@dataclass
class StageRecord:
    stage: Stage
    task: asyncio.Task[None] | None = None
    state: str = "starting"  # running | backoff | finished | cancelled
    restarts: int = 0
    delays: deque[float] = field(default_factory=lambda: deque(maxlen=100))  # the latest
    last_error: str = ""


class Supervisor:
    def __init__(
        self,
        clock: Clock,
        backoff: Backoff,
        healthy_after_s: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.clock, self.backoff, self.healthy_after_s, self.rand = (
            clock,
            backoff,
            healthy_after_s,
            rand,
        )
        self.records: dict[str, StageRecord] = {}

    def start(self, stage: Stage) -> asyncio.Task[None]:
        """Start ``stage`` under supervision; returns the supervising task."""
        if stage.name in self.records:
            raise ValueError(f"stage {stage.name!r} already supervised")
        rec = StageRecord(stage)
        self.records[stage.name] = rec
        rec.task = asyncio.create_task(self._supervise(rec), name=f"stage:{stage.name}")
        return rec.task

    async def _supervise(self, rec: StageRecord) -> None:
        attempt = 0
        name = rec.stage.name
        while True:
            started = self.clock.monotonic()
            rec.state = "running"
            try:
                await rec.stage.run()
            except asyncio.CancelledError:
                rec.state = "cancelled"
                raise
            except Exception as exc:
                if self.clock.monotonic() - started >= self.healthy_after_s:
                    attempt = 0
                delay = self.backoff.delay(attempt, self.rand())
                attempt += 1
                rec.restarts += 1
                rec.delays.append(delay)
                rec.last_error = f"{type(exc).__name__}: {exc}"
                rec.state = "backoff"
                log.error(
                    "stage %s crashed (%s); restart #%d in %.2fs",
                    name,
                    rec.last_error,
                    rec.restarts,
                    delay,
                    exc_info=exc,
                )
                await self.clock.sleep(delay)
                continue
            rec.state = "finished"
            log.debug("stage %s finished", name)
            return

    def status(self) -> dict[str, dict[str, object]]:
        return {
            n: {"state": r.state, "restarts": r.restarts, "last_error": r.last_error}
            for n, r in self.records.items()
        }
