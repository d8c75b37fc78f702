"""A VictoriaMetrics server (Debian's ``victoria-metrics``) on 127.0.0.1, for uplink tests.

Started with deduplication on (one sample per series and millisecond, as InfluxDB keeps one point
per series and timestamp) and storage in a given directory. It speaks the InfluxDB v2 write API
(``/api/v2/write``); data is read back through ``/api/v1/export``.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from gateway.demo import free_port

BINARY = "victoria-metrics"


class VictoriaMetrics:
    def __init__(self, port: int, ca: Path | None = None, pid: int | None = None) -> None:
        self.port = port
        self.pid = pid  # the server process (for its CPU time)
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True

    def cpu_s(self) -> float:
        """CPU time (user + system, seconds) the server process has used so far (from
        ``/proc/<pid>/stat``; the kernel counts it in clock ticks, 10 ms)."""
        if self.pid is None:
            raise RuntimeError("the server's process is not known")
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # (after the command name)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl))

    async def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, object]]:
        """Every series matching ``match`` with its samples (after making recent writes
        visible)."""
        async with self.session() as s:
            async with s.get(f"{self.url}/internal/force_flush") as r:
                r.raise_for_status()
            form = {"match[]": match, "start": "0", "end": "4102444800"}  # all time to 2100
            async with s.post(f"{self.url}/api/v1/export", data=form) as r:
                r.raise_for_status()
                text = await r.text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def samples(self, metric: str) -> dict[tuple[tuple[str, str], ...], list[int]]:
        """Timestamps (ms) of ``metric`` per label set (without ``__name__``)."""
        out: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for s in await self.export(f'{{__name__="{metric}"}}'):
            labels = s["metric"]
            assert isinstance(labels, dict)
            key = tuple(sorted((k, str(v)) for k, v in labels.items() if k != "__name__"))
            ts = s["timestamps"]
            assert isinstance(ts, list)
            out.setdefault(key, []).extend(int(t) for t in ts)
        return out

    async def values(self, metric: str) -> list[tuple[dict[str, str], int, float]]:
        """Every sample of ``metric`` as ``(labels, timestamp ms, value)``."""
        out = []
        for s in await self.export(f'{{__name__="{metric}"}}'):
            labels = s["metric"]
            assert isinstance(labels, dict)
            assert isinstance(s["timestamps"], list)
            assert isinstance(s["values"], list)
            for t, v in zip(s["timestamps"], s["values"], strict=True):
                out.append(({str(k): str(x) for k, x in labels.items()}, int(t), float(v)))
        return out


async def _wait_healthy(vm: VictoriaMetrics, proc: asyncio.subprocess.Process) -> None:
    async with vm.session() as s:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{BINARY} exited with {proc.returncode}")
            try:
                async with s.get(f"{vm.url}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # polling the health endpoint, not waiting a fixed time


@asynccontextmanager
async def victoria_metrics(
    storage: Path, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[VictoriaMetrics]:
    """Run a server with storage in ``storage`` until the block exits; with ``tls`` (a
    certificate and its key, PEM) it serves HTTPS only."""
    port = free_port()
    tls_args = ["-tls", f"-tlsCertFile={tls[0]}", f"-tlsKeyFile={tls[1]}"] if tls else []
    proc = await asyncio.create_subprocess_exec(
        BINARY,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={storage}",
        "-dedup.minScrapeInterval=1ms",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
        "-search.disableCache",
        *tls_args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        vm = VictoriaMetrics(port, tls[0] if tls else None, proc.pid)
        async with asyncio.timeout(30):  # a hang guard
            await _wait_healthy(vm, proc)
        yield vm
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
