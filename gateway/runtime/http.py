"""The health and metrics endpoint: ``/healthz``, ``/metrics`` and ``/status`` over HTTP.

- ``/healthz``: JSON ``{"state": "ok"|"degraded"|"failing", "reasons": [...]}``; HTTP 200 unless
  failing (503), so a plain HTTP check works too;
- ``/metrics``: Prometheus text format (see ``gateway.runtime.metrics``);
- ``/status``: the full status snapshot as JSON (what ``pdm-gateway status`` prints).

``start()`` binds (``ResourceUnavailableError`` if the address is taken) and writes the URL in
use to ``url_file``; ``stop()`` unbinds and removes that file. Handlers only read the snapshot:
they never touch stage internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.core.errors import ResourceUnavailableError
from gateway.runtime.config import HttpConfig
from gateway.runtime.metrics import render

log = logging.getLogger(__name__)

StatusFn = Callable[[], Mapping[str, Any]]


class HttpEndpoint:
    def __init__(self, cfg: HttpConfig, status: StatusFn, url_file: Path | None = None) -> None:
        self.cfg, self.status, self.url_file = cfg, status, url_file
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ResourceUnavailableError(
                f"cannot serve health/metrics on {self.cfg.host}:{self.cfg.port}: {exc.strerror}"
                " (set runtime.http.port, or runtime.http.enabled = false)"
            ) from exc
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        if self.url_file is not None:
            self.url_file.parent.mkdir(parents=True, exist_ok=True)
            self.url_file.write_text(self.url + "\n")
        log.info("health and metrics on %s/healthz and %s/metrics", self.url, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.url_file is not None:
            self.url_file.unlink(missing_ok=True)

    async def _healthz(self, _: web.Request) -> web.Response:
        health = dict(self.status().get("health", {}))
        code = 503 if health.get("state") == "failing" else 200
        return web.json_response(health, status=code)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=render(self.status), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def _status(self, _: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(self.status(), default=str, allow_nan=True),
            content_type="application/json",
        )
