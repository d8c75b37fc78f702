"""Configuration schema of the durable journal (``[store]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.core.configbase import StrictModel
from gateway.store.journal import Bounds


class StoreConfig(StrictModel):
    """SQLite journal. A relative ``path`` is inside ``gateway.state_dir``.

    Bounds: the file stays under ``max_bytes`` (bytes) and leaves ``min_free_bytes`` free on its
    disk (short of that, it stops growing); bulk records (features, scores) stored more than
    ``max_age_s`` ago and alerts stored more than ``alert_max_age_s`` ago are deleted. Eviction
    order when full: acknowledged records, then features, then scores; alerts only when nothing
    else is left, and only as many as new rows need.
    """

    path: Path = Path("journal.sqlite")
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    batch_max: int = Field(500, ge=1, le=100_000)
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    #: at least 256 KiB: the WAL allowance (2 x 16 pages at least) must leave room for records
    max_bytes: int = Field(1 << 30, ge=1 << 18)
    min_free_bytes: int = Field(100 << 20, ge=0)
    max_age_s: float | None = Field(30 * 86400.0, gt=0)
    alert_max_age_s: float | None = Field(365 * 86400.0, gt=0)

    def bounds(self) -> Bounds:
        return Bounds(
            max_bytes=self.max_bytes,
            min_free_bytes=self.min_free_bytes,
            max_age_s=self.max_age_s,
            priority_max_age_s=self.alert_max_age_s,
        )
