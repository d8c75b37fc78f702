"""Configuration schema of the Modbus collector (one entry per device under ``devices.modbus``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import Backoff, StrictModel

DataType = Literal[
    "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
WordByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]

#: registers occupied by one value of each numeric type
REGISTERS_PER_TYPE: dict[str, int] = {
    "bit": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}


class PollGroup(StrictModel):
    """Tags sharing a poll period."""

    period_s: float = Field(1.0, gt=0, le=86_400)


class ModbusTag(StrictModel):
    """One scalar value mapped to a channel: ``value = raw * scale + offset`` in ``unit``.

    ``order`` names the byte layout of multi-register values with A as the most significant
    byte: ABCD big-endian, CDAB word-swapped, BADC byte-swapped, DCBA little-endian.
    ``length`` is the register count of a ``string`` (two characters per register).
    """

    channel: str
    function: Literal[1, 2, 3, 4] = 3
    address: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    order: WordByteOrder = "ABCD"
    length: int = Field(0, ge=0, le=125)
    scale: float = 1.0
    offset: float = 0.0
    #: unit of the scaled value; when given it must be the channel's unit (a guard against
    #: mapping a register to the wrong channel)
    unit: str | None = None
    poll_group: str = "default"

    @property
    def register_count(self) -> int:
        return self.length if self.type == "string" else REGISTERS_PER_TYPE[self.type]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.function in (1, 2) and self.type != "bit":
            raise ValueError(f"function {self.function} reads bits: type must be 'bit'")
        if self.function in (3, 4) and self.type == "bit":
            raise ValueError("type 'bit' needs function 1 (coils) or 2 (discrete inputs)")
        if self.type == "string" and self.length == 0:
            raise ValueError("a string tag needs 'length' (registers)")
        if self.address + self.register_count > 65536:
            raise ValueError("tag runs past register 65535")
        return self


class ModbusWaveform(StrictModel):
    """A waveform ring buffer on the device, mapped to one channel.

    The device writes samples into ``ring_length`` registers starting at ``ring_address``
    (sample ``k`` at ``ring_address + k % ring_length``) and counts samples written in a uint32
    at ``sequence_address`` (two registers, ``sequence_order``). ``value = raw * scale + offset``.
    The sample rate is the channel's.
    """

    channel: str
    function: Literal[3, 4] = 4
    ring_address: int = Field(ge=0, le=65535)
    ring_length: int = Field(ge=16, le=65536)
    sequence_address: int = Field(ge=0, le=65534)
    sequence_order: WordByteOrder = "ABCD"
    sample_type: Literal["int16", "uint16"] = "int16"
    scale: float = 1.0
    offset: float = 0.0
    period_s: float = Field(0.25, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ring_address + self.ring_length > 65536:
            raise ValueError("ring runs past register 65535")
        if self.ring_length & (self.ring_length - 1):
            # with a power of two, k % ring_length is the same for the device's uint32 counter
            # and for the gateway's unwrapped one, whenever the gateway starts
            raise ValueError("ring_length must be a power of two")
        seq = range(self.sequence_address, self.sequence_address + 2)
        ring = range(self.ring_address, self.ring_address + self.ring_length)
        if seq.start < ring.stop and ring.start < seq.stop:
            raise ValueError("sequence counter overlaps the ring")
        return self


class ModbusDevice(StrictModel):
    """One Modbus server (a TCP endpoint or a unit on a serial RTU bus)."""

    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = None
    port: int = Field(502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(19200, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(1.0, gt=0, le=60)
    max_in_flight: int = Field(1, ge=1, le=16)
    max_gap: int = Field(8, ge=0, le=124)
    reconnect: Backoff = Backoff()
    #: retries of a request answered "busy" (exception 5 or 6), after busy_retry_s, doubling
    busy_retries: int = Field(2, ge=0, le=10)
    busy_retry_s: float = Field(0.05, gt=0, le=10)
    #: a tag not refreshed within stale_after_periods x its period is re-sent as Uncertain
    stale_after_periods: float = Field(2.0, ge=1.0, le=1000)
    #: circuit breaker: after breaker_threshold failed connects in a row, wait
    #: breaker_cooldown_s before one probe attempt (half-open)
    breaker_threshold: int = Field(5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(30.0, gt=0, le=3600)
    #: a request with no answer (or a malformed one) marks its tags Bad for that period; only
    #: this many failed requests in a row, with no answer in between, drop the connection
    failed_requests_before_reconnect: int = Field(3, ge=1, le=1000)
    poll_groups: dict[str, PollGroup] = Field(default_factory=lambda: {"default": PollGroup()})
    tags: list[ModbusTag] = Field(default_factory=list)
    waveforms: list[ModbusWaveform] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport 'tcp' needs 'host'")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport 'rtu' needs 'serial_port'")
        if not self.tags and not self.waveforms:
            raise ValueError("a device needs at least one of 'tags' and 'waveforms'")
        for i, tag in enumerate(self.tags):
            if tag.poll_group not in self.poll_groups:
                raise ValueError(f"tags.{i}.poll_group: unknown poll group {tag.poll_group!r}")
        return self

    @property
    def endpoint(self) -> str:
        """Human-readable address for logs."""
        if self.transport == "tcp":
            return f"{self.host}:{self.port}/{self.unit_id}"
        return f"{self.serial_port}@{self.baudrate}/{self.unit_id}"

    def channels(self) -> list[tuple[str, str]]:
        """``(key path, channel id)`` of every channel this device feeds."""
        return [(f"tags.{i}.channel", t.channel) for i, t in enumerate(self.tags)] + [
            (f"waveforms.{i}.channel", w.channel) for i, w in enumerate(self.waveforms)
        ]
