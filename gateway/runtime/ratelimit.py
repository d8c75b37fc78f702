"""Rate-limited logging: the first occurrence is logged, repeats at most once per interval with
a count of what was suppressed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.interval_s, self._mono = logger, interval_s, monotonic
        self._last: float | None = None
        self.suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._mono()
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return
        if self.suppressed:
            msg += f" ({self.suppressed} similar messages suppressed)"
        self.logger.warning(msg, *args)
        self._last, self.suppressed = now, 0
