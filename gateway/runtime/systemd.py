"""systemd integration without a dependency: ``sd_notify`` datagrams and the watchdog heartbeat.

With ``Type=notify`` the unit is started once ``READY=1`` arrives; ``WatchdogSec=`` makes systemd
kill and restart the service when ``WATCHDOG=1`` stops arriving. The heartbeat is sent from a
task on the event loop, so a blocked or hung loop stops it, which is the point. Outside systemd
(no ``NOTIFY_SOCKET``) everything here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

from gateway.core.clock import Clock

log = logging.getLogger(__name__)


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to the service manager; False when not under one."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", addr.lstrip("\0"), exc)
        return False
    return True


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half the ``WATCHDOG_USEC`` the manager asked for (seconds), or None when not watched."""
    e = env if env is not None else os.environ
    usec, pid = e.get("WATCHDOG_USEC"), e.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.01, int(usec) / 2e6)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None


class Watchdog:
    """Stage that sends ``WATCHDOG=1`` every ``interval_s`` from the event loop."""

    name = "watchdog"

    def __init__(self, clock: Clock, interval_s: float) -> None:
        self.clock, self.interval_s = clock, interval_s
        self.beats = 0

    async def run(self) -> None:
        while True:
            if notify("WATCHDOG=1"):
                self.beats += 1
            await self.clock.sleep(self.interval_s)
