"""``pdm-gateway demo``: simulated machines on a real Modbus server, one of them developing a
bearing fault, the gateway scoring them with the shipped models, and a live terminal dashboard.

Modules: ``plant`` (the simulated machines and the gateway's embedded configuration), ``watch``
(what the dashboard shows, taken from the running pipeline), ``dashboard`` (rendering),
``plots`` (PNG plots, optional matplotlib), ``run`` (the whole demo). This module stays light:
tests import ``free_port`` from it.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller binds it right away)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
