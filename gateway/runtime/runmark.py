"""Whether the previous run stopped cleanly: a marker file in ``state_dir`` exists while the
gateway runs and a clean stop removes it. Found at start, it means the previous run was killed or
crashed (``kill -9``, power cut, OOM): the gateway logs it once and reports it in its status (and
health, see ``gateway.runtime.health``) until the uplink has resent the journal's backlog.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class RunMarker:
    """Owns the file ``path`` (its parent must exist). ``begin`` at start, ``end`` after a
    clean stop; ``status`` latches ``recovered`` once ``caught_up`` is reported true."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unclean_start = False
        self.recovered = True

    def begin(self) -> None:
        """Note whether the previous run left its marker, then leave ours (our pid, for people)."""
        self.unclean_start = self.path.exists()
        self.recovered = not self.unclean_start
        if self.unclean_start:
            log.warning(
                "previous run ended without a clean stop (%s was left): resending its backlog",
                self.path,
            )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")

    def end(self) -> None:
        """A clean stop: remove the marker."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def status(self, caught_up: bool) -> dict[str, object]:
        """``caught_up``: nothing from the journal is left to send (or there is no uplink)."""
        if not self.recovered and caught_up:
            self.recovered = True
            log.info("recovered from the unclean stop of the previous run: backlog resent")
        return {"unclean_start": self.unclean_start, "recovered": self.recovered}
