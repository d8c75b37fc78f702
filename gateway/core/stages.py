"""Stage protocols and their lifecycle contracts.

Every stage is one object with a ``name`` and an ``async run()``; the runtime owns the task that
runs it and the bounded queues that connect stages.

Lifecycle:
- A **source** (collector) produces into its output queue until it is cancelled. Cancellation is
  its only stop signal; it must close its connections on the way out (``finally``) and must not
  swallow ``CancelledError``.
- A **processor** (DSP, inference, store writer) consumes its input queue until the queue is
  closed *and* empty, finishes the item in hand, flushes what it holds, then returns. Returning
  is how it reports a clean drain. It never closes its input; it does not close its output either:
  the runtime does that once every producer of that queue has returned.
- A stage that raises is restarted by the supervisor with backoff; state that must survive a
  restart (framing buffers, cursors) lives outside the ``run`` call, in the stage object.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Stage(Protocol):
    """Anything the supervisor can run."""

    name: str

    async def run(self) -> None:
        """Run until cancelled (sources) or until the input is closed and drained (processors)."""
        ...


@runtime_checkable
class HasStatus(Protocol):
    """Optional capability: a stage that reports its own health as a short state string."""

    def status(self) -> dict[str, object]:
        """A JSON-serialisable snapshot of the stage's state and counters."""
        ...
