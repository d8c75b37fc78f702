"""Configuration schema of the durable journal (``[store]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.core.configbase import StrictModel


class StoreConfig(StrictModel):
    """SQLite journal. A relative ``path`` is inside ``gateway.state_dir``."""

    path: Path = Path("journal.sqlite")
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    batch_max: int = Field(500, ge=1, le=100_000)
    flush_interval_s: float = Field(1.0, gt=0, le=60)
