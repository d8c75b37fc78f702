"""Connection-state events shared by the collectors: one ``asyncio.Event`` per state, exactly the
current state's set, so tests and status views wait on a state instead of polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class StateEvents:
    """``enter(state)`` sets that state's event and clears the others; ``wait(state)`` returns
    once the collector is (or next enters) ``state``. Event-loop only."""

    def __init__(self, states: Iterable[str]) -> None:
        self._events = {s: asyncio.Event() for s in states}

    def enter(self, state: str) -> None:
        for s, ev in self._events.items():
            if s == state:
                ev.set()
            else:
                ev.clear()

    async def wait(self, state: str) -> None:
        await self._events[state].wait()
