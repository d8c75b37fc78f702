"""An HTTP fault proxy between the gateway and the time-series server (asyncio, aiohttp).

Modes, switched by the test at any time:
- ``pass``: forward each request and return the server's answer;
- ``cut``: close the connection without an answer (the uplink sees a network error);
- ``throttle``: answer 503 with ``Retry-After: retry_after`` (a string, as sent);
- ``delay_s``: wait that long (wall time) before forwarding.
A request whose (decompressed) body contains ``poison`` is answered 400, like a server rejecting bad
data, in every mode but ``cut``. ``accepted`` holds the lines of each request the server took, in
order; ``changed`` is set after every request.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from gateway.demo import free_port


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "pass"
        self.retry_after = "1"
        self.poison = b"poison"
        self.delay_s = 0.0
        self.accepted: list[list[str]] = []
        self.requests = 0
        self.cut_requests = 0
        self.throttled = 0
        self.rejected = 0
        self.encodings: set[str] = set()  # Content-Encoding of the requests seen
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    def lines(self) -> list[str]:
        return [line for batch in self.accepted for line in batch]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            return await self._answer(request)
        finally:
            self.changed.set()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.mode == "cut":
            self.cut_requests += 1
            assert request.transport is not None
            request.transport.abort()  # no answer: the client sees the connection drop
            return web.Response(status=502)
        self.encodings.add(request.headers.get("Content-Encoding", "identity"))
        plain = body  # aiohttp has already decompressed a gzip body
        if self.mode == "throttle":
            self.throttled += 1
            return web.Response(status=503, headers={"Retry-After": self.retry_after})
        if self.poison in plain:
            self.rejected += 1
            return web.json_response(
                {"code": "invalid", "message": "unable to parse: poisoned line"}, status=400
            )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "authorization")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as r:
            data = await r.read()
            if 200 <= r.status < 300:
                self.accepted.append(plain.decode().splitlines())
            return web.Response(status=r.status, body=data)
