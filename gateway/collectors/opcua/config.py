"""Configuration schema of OPC UA devices (``devices.opcua``).

Example (the simulator's first machine)::

    [devices.opcua.sim]
    endpoint = "opc.tcp://127.0.0.1:4840/pdm-sim/"

    [[devices.opcua.sim.nodes]]
    channel = "m1_temp"
    namespace_uri = "urn:pdm-gateway:simulator"
    browse_path = ["Machines", "m1", "Temperature"]
    unit = "degC"

    [[devices.opcua.sim.nodes]]
    channel = "m1_vib"
    namespace_uri = "urn:pdm-gateway:simulator"
    kind = "waveform"
    node_id = "s=m1.vib0.Waveform"
    sequence_node_id = "s=m1.vib0.FirstIndex"
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from gateway.core.configbase import Backoff, StrictModel

#: a NodeId without its namespace part: numeric, string, GUID or opaque (base64) identifier
NODE_ID_PATTERN = r"^(i=[0-9]+|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$"


class OpcUaNode(StrictModel):
    """One node: by NodeId string (``i=``, ``s=``, ``g=``, ``b=`` part) or by browse path, with
    the namespace given by URI, never by index (servers may reorder their namespace array).

    A browse path starts below the ``Objects`` folder; each element is a browse name in
    ``namespace_uri``. ``kind = "waveform"`` nodes hold a one-dimensional numeric array: each
    new value is one ``SampleBlock`` at the channel's sample rate, stamped with the array's
    source timestamp (taken as the time of its first sample). Its ``sequence`` (index of the
    first sample in the stream) is the value of the counter node
    ``sequence_node_id``/``sequence_browse_path`` stamped with the same source timestamp (e.g.
    the simulator's ``FirstIndex``); without one, the first block is 0 and each later block is
    ``previous sequence + round((ts - previous ts) * sample_rate)``, so a lost block shows as a
    gap (see ``convert.WaveformStream``).

    ``unit`` and ``sample_rate_hz``, when given, must equal the channel's (guards against
    mapping a node to the wrong channel). ``sampling_interval_ms``, ``queue_size`` and ``mode``
    default to the device's. ``deadband`` (absolute, in the value's unit) applies to readings.
    """

    channel: str
    namespace_uri: str = Field(min_length=1)
    node_id: str | None = Field(None, pattern=NODE_ID_PATTERN)
    browse_path: list[str] | None = Field(None, min_length=1)
    kind: Literal["reading", "waveform"] = "reading"
    mode: Literal["subscription", "polling"] | None = None
    unit: str | None = None
    sample_rate_hz: float | None = Field(None, gt=0, le=1_000_000)
    sampling_interval_ms: float | None = Field(None, ge=0, le=3_600_000)
    queue_size: int | None = Field(None, ge=1, le=10_000)
    deadband: float | None = Field(None, gt=0)
    sequence_node_id: str | None = Field(None, pattern=NODE_ID_PATTERN)
    sequence_browse_path: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of 'node_id' and 'browse_path'")
        has_seq = self.sequence_node_id is not None or self.sequence_browse_path is not None
        if self.sequence_node_id is not None and self.sequence_browse_path is not None:
            raise ValueError("give at most one of 'sequence_node_id' and 'sequence_browse_path'")
        if self.kind == "reading" and (has_seq or self.sample_rate_hz is not None):
            raise ValueError("'sequence_*' and 'sample_rate_hz' apply to waveform nodes only")
        if self.kind == "waveform" and self.deadband is not None:
            raise ValueError("'deadband' applies to reading nodes only")
        return self

    @property
    def label(self) -> str:
        """How logs name the node: its NodeId string or browse path."""
        return self.node_id or "/".join(self.browse_path or [])


class OpcUaDevice(StrictModel):
    """One OPC UA server endpoint.

    Security: ``security_mode``/``security_policy`` both ``None`` or both set. With security the
    gateway's own application certificate (``<state_dir>/pki/own``, created on first start) is
    used, and the server's certificate must be in ``<state_dir>/pki/trusted`` (else it is
    refused and stored under ``rejected``: ``pdm-gateway opcua trust <file>`` trusts it), or
    is trusted on first use when ``trust_on_first_use``. Authentication: anonymous, or
    ``username``/``password``, or ``user_certificate``/``user_private_key`` (X.509 identity).

    Recovery: the session is probed every ``keepalive_s``; a subscription silent for
    ``stale_after_keepalives`` keep-alive periods counts as lost (a subscription's keep-alive
    period is requested as about ``keepalive_s``; the server's revised publishing interval
    times its revised keep-alive count is what counts). On loss the collector reconnects with
    ``reconnect`` backoff and re-creates every subscription. A refusal that retrying cannot
    fix (untrusted certificate, wrong credentials, no matching endpoint) is logged once and
    retried every ``reconnect.max_s`` only. Nodes that cannot be served on a live session
    (namespace or node not there yet, item refused) are tried again every ``node_retry_s``.

    Many nodes are split into subscriptions of at most ``max_items_per_subscription``
    monitored items; polled nodes are read in batches of ``poll_batch_size``.
    """

    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
    ] = "None"
    application_uri: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    user_certificate: Path | None = None
    user_private_key: Path | None = None
    trust_on_first_use: bool = False
    mode: Literal["subscription", "polling"] = "subscription"
    publishing_interval_ms: int = Field(250, ge=10, le=60_000)
    sampling_interval_ms: float = Field(100.0, ge=0, le=3_600_000)
    queue_size: int = Field(1, ge=1, le=10_000)
    waveform_queue_size: int = Field(16, ge=1, le=10_000)
    max_items_per_subscription: int = Field(1000, ge=1, le=100_000)
    #: PublishRequests kept outstanding on the session (at least one per few subscriptions
    #: keeps every subscription flowing when the server is slow to answer)
    publish_requests: int = Field(3, ge=1, le=20)
    poll_period_s: float = Field(1.0, gt=0)
    poll_batch_size: int = Field(500, ge=1, le=100_000)
    timeout_s: float = Field(4.0, gt=0, le=600)
    keepalive_s: float = Field(5.0, gt=0, le=600)
    stale_after_keepalives: int = Field(5, ge=2, le=1000)
    node_retry_s: float = Field(10.0, gt=0, le=3600)
    session_timeout_s: float = Field(60.0, ge=1, le=86_400)
    reconnect: Backoff = Backoff()
    nodes: list[OpcUaNode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.security_mode == "None") != (self.security_policy == "None"):
            raise ValueError("security_mode and security_policy must both be 'None' or neither")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password' or neither")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("give both 'user_certificate' and 'user_private_key' or neither")
        if self.username is not None and self.user_certificate is not None:
            raise ValueError("authenticate with a user name or a certificate, not both")
        return self

    def channels(self) -> list[tuple[str, str]]:
        return [(f"nodes.{i}.channel", n.channel) for i, n in enumerate(self.nodes)]

    def node_mode(self, node: OpcUaNode) -> str:
        return node.mode or self.mode


def check_opcua_device(
    path: str, dev: OpcUaDevice, units: dict[str, str], rates: dict[str, float | None]
) -> list[tuple[str, str]]:
    """Cross-section checks of one device: node ``unit`` and ``sample_rate_hz`` guards against
    the channel's (``units``/``rates`` by channel name; unknown channels are reported
    elsewhere)."""
    errors: list[tuple[str, str]] = []
    for i, n in enumerate(dev.nodes):
        if n.channel not in units:
            continue
        if n.unit is not None and n.unit != units[n.channel]:
            errors.append(
                (
                    f"{path}.nodes.{i}.unit",
                    f"{n.unit!r} differs from channel {n.channel!r} unit {units[n.channel]!r}",
                )
            )
        rate = rates.get(n.channel)
        if n.sample_rate_hz is not None and rate is not None and n.sample_rate_hz != rate:
            errors.append(
                (
                    f"{path}.nodes.{i}.sample_rate_hz",
                    f"{n.sample_rate_hz} differs from channel {n.channel!r} rate {rate} Hz",
                )
            )
    return errors
