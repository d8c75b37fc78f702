"""Configuration schema of the runtime: queues, supervision, shutdown (``[runtime]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.core.configbase import Backoff, StrictModel

WhenFull = Literal["block", "drop_newest", "drop_oldest"]


class QueueConfig(StrictModel):
    """A bounded queue between two stages and what happens when it is full."""

    size: int = Field(256, ge=1, le=1_000_000)
    when_full: WhenFull = "block"


class QueuesConfig(StrictModel):
    #: collectors -> DSP: a slow DSP must not stall polling, so the oldest block goes.
    samples: QueueConfig = QueueConfig(size=512, when_full="drop_oldest")
    #: DSP -> inference (only with models): block, every frame gets scored.
    frames: QueueConfig = QueueConfig(size=1024, when_full="block")
    #: DSP (or inference) -> store: block, so nothing computed is lost while the store catches up.
    records: QueueConfig = QueueConfig(size=1024, when_full="block")


class HttpConfig(StrictModel):
    """The health and metrics endpoint (``/healthz``, ``/metrics``, ``/status``). Port 0 picks a
    free port; the address in use is written to ``<state_dir>/http.url`` for ``pdm-gateway
    status``. Keep ``host`` on loopback unless a reverse proxy guards it."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9750, ge=0, le=65535)


class RuntimeConfig(StrictModel):
    queues: QueuesConfig = QueuesConfig()
    http: HttpConfig = HttpConfig()
    restart: Backoff = Backoff(initial_s=0.5, max_s=60.0)
    #: a stage that ran this long without crashing gets its backoff reset
    healthy_after_s: float = Field(60.0, gt=0)
    shutdown_deadline_s: float = Field(10.0, gt=0, le=600)
