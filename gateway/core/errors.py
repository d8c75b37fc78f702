"""Error hierarchy: every failure the gateway handles falls into one of three classes.

- ``ConfigError``: the configuration is wrong; fixing it needs a human. Raised at load time.
- ``TransientError``: the condition may clear by itself (device unreachable, timeout, uplink
  down); the caller retries with backoff.
- ``PermanentError``: retrying the same operation cannot succeed (a rejected record, an illegal
  register address); the caller drops or rejects the item, counts it and carries on.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of all errors raised on purpose by the gateway."""


class ConfigError(GatewayError):
    """Invalid configuration. ``errors`` holds ``(dotted.key.path, reason)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "") -> None:
        self.errors = errors
        self.source = source
        lines = [f"{path}: {reason}" if path else reason for path, reason in errors]
        super().__init__("\n".join(lines))


class TransientError(GatewayError):
    """A failure that may clear by itself; retry with backoff."""


class DeviceBusyError(TransientError):
    """The device answered "busy" (Modbus exception 5 or 6): retry the request shortly."""


class RequestFailedError(TransientError):
    """One request got no answer, or a malformed one, on a connection that is still up: the
    request failed, not necessarily the connection."""


class PermanentError(GatewayError):
    """A failure that retrying cannot fix; reject the item and count it."""


class ResourceUnavailableError(GatewayError):
    """A local resource (a port to listen on, a file) cannot be had at start-up."""
