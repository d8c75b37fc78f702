"""One InfluxDB v2 write endpoint, with its failures classified.

``InfluxSink.write(lines)`` (line protocol, UTF-8) returns when the server accepted every line,
else raises:
- ``SinkDown``: network errors, timeouts, 5xx, and 401/403/404 (a wrong token or bucket is not
  the data's fault): keep the batch, retry with backoff.
- ``SinkThrottled``: 429 or 503; ``retry_after_s`` is the server's Retry-After (``None`` when it
  gave none): keep the batch, wait that long.
- ``SinkRejected``: 400, 413 or 422: this batch's data is refused; retrying it cannot succeed.
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from gateway.core.errors import PermanentError, TransientError
from gateway.uplink.config import InfluxUplinkConfig

REJECT_STATUSES = frozenset({400, 413, 422})
THROTTLE_STATUSES = frozenset({429, 503})
GZIP_LEVEL = 1  # a batch shrinks about as much as at level 9, for a fraction of the CPU


class SinkDown(TransientError):
    """The server cannot take the batch now (network, 5xx, auth)."""


class SinkThrottled(TransientError):
    def __init__(self, msg: str, retry_after_s: float | None) -> None:
        super().__init__(msg)
        self.retry_after_s = retry_after_s


class SinkRejected(PermanentError):
    """The server refused the batch's data."""


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (TypeError, ValueError):
        return None


def _header(exc: ApiException, name: str) -> str | None:
    headers = exc.headers
    if not headers:
        return None
    for k, v in dict(headers).items():
        if str(k).lower() == name.lower():
            return str(v)
    return None


class InfluxSink:
    """A client for one endpoint; ``open`` inside the running loop, ``close`` when done."""

    def __init__(self, cfg: InfluxUplinkConfig) -> None:
        self.cfg = cfg
        self._client: InfluxDBClientAsync | None = None
        self._service: WriteService | None = None

    def open(self) -> None:
        kw: dict[str, object] = {}
        if str(self.cfg.url).startswith("https"):
            ctx = ssl.create_default_context(
                cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None
            )
            if not self.cfg.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            kw["ssl_context"] = ctx
        self._client = InfluxDBClientAsync(
            url=str(self.cfg.url).rstrip("/"),
            token=self.cfg.token.get_secret_value(),
            org=self.cfg.org,
            timeout=int(self.cfg.timeout_s * 1000),
            enable_gzip=False,  # compressed here, at a fast level (the client's is level 9)
            **kw,
        )
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._client is not None:
            client, self._client, self._service = self._client, None, None
            await client.close()  # type: ignore[no-untyped-call]

    def body(self, lines: Sequence[bytes]) -> bytes:
        """The request body of ``lines`` (gzip-compressed when configured). Pure and thread-safe:
        the forwarder prepares the next batch's body on another thread."""
        data = b"\n".join(lines)
        if self.cfg.gzip:  # (wbits 31: a gzip stream; zlib releases the GIL while compressing)
            return zlib.compress(data, GZIP_LEVEL, wbits=31)
        return data

    async def write(self, lines: Sequence[bytes], now_s: float, body: bytes | None = None) -> None:
        """Write ``lines`` (nanosecond timestamps); ``body`` is ``body(lines)`` when already
        made. ``now_s`` (wall time) reads HTTP dates."""
        if self._service is None:
            self.open()
        assert self._service is not None
        if body is None:
            body = self.body(lines)
        extra: dict[str, str] = {}
        if self.cfg.gzip:
            extra["content_encoding"] = "gzip"
        try:
            await self._service.post_write_async(  # type: ignore[no-untyped-call]
                org=self.cfg.org,
                bucket=self.cfg.bucket,
                body=body,
                precision=WritePrecision.NS,
                content_type="text/plain; charset=utf-8",
                **extra,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            msg = f"HTTP {status} {exc.reason or ''}".strip()
            if status in THROTTLE_STATUSES:
                raise SinkThrottled(
                    msg, parse_retry_after(_header(exc, "Retry-After"), now_s)
                ) from exc
            if status in REJECT_STATUSES:
                raise SinkRejected(f"{msg}: {exc.body!s:.200}") from exc
            raise SinkDown(msg) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SinkDown(f"{type(exc).__name__}: {exc}") from exc
