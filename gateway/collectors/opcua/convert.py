"""Pure conversions from OPC UA values to records: status codes, timestamps, waveform sequence.

No I/O and no asyncio; every function is cheap enough to run per notification.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from asyncua import ua

from gateway.core.records import FloatArray, Quality

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC UA severity (the top two bits of the status code) as a ``Quality``; no status is
    Good (the encoding omits Good)."""
    if status is None:
        return Quality.GOOD
    severity = status.value >> 30
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def datetime_ns(t: datetime | None) -> int | None:
    """A UTC ``datetime`` (naive ones are taken as UTC) as integer ns since the Unix epoch."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    d = t - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


def source_ts_ns(dv: ua.DataValue | None, fallback_ns: int) -> int:
    """The value's source timestamp, else its server timestamp, else ``fallback_ns``."""
    if dv is None:
        return fallback_ns
    ts = datetime_ns(dv.SourceTimestamp)
    if ts is None:
        ts = datetime_ns(dv.ServerTimestamp)
    return fallback_ns if ts is None else ts


def reading_value(val: object) -> float | None:
    """A scalar as float (booleans as 0/1; NaN and infinities as they are); ``None`` if it is
    not a number."""
    if isinstance(val, bool):
        return float(val)
    if isinstance(val, (int, float)):
        return float(val)
    return None


def waveform_samples(val: object) -> FloatArray | None:
    """A one-dimensional numeric array as a float32 array; ``None`` if ``val`` is not one.

    asyncua decodes arrays to lists of Python numbers; packing them with ``struct`` and
    viewing the bytes is about twice as fast as ``np.array(list)`` (the collector's hot path).
    """
    if isinstance(val, list | tuple):
        try:
            raw = struct.pack(f"<{len(val)}f", *val)
        except (struct.error, OverflowError):  # past float32's range: through float64
            try:
                raw64 = np.frombuffer(struct.pack(f"<{len(val)}d", *val), dtype=np.float64)
            except (struct.error, TypeError):
                return None
            with np.errstate(over="ignore"):
                return raw64.astype(np.float32)
        except TypeError:
            return None
        return np.frombuffer(raw, dtype=np.float32)  # read-only, as records hold arrays
    if isinstance(val, np.ndarray) and val.ndim == 1 and val.dtype.kind in "fiub":
        if val.dtype == np.float32 and not val.flags.writeable:
            return val  # decoded for this record alone (see fastarrays)
        with np.errstate(over="ignore"):
            return val.astype(np.float32)
    return None


@dataclass
class Placement:
    """Where a block goes in its channel's stream: its ``sequence``, how many leading samples
    repeat samples already delivered (``skip``), and how many were missed before it (``lost``)."""

    sequence: int
    skip: int = 0
    lost: int = 0


class WaveformStream:
    """Sequence numbering of one waveform channel (lives as long as the collector, across
    reconnects).

    With a counter (the index of the block's first sample, from the server) that counter is the
    sequence. Without, the first block ever received is sequence 0 and each later block is
    numbered from the previous one by source time: ``last_seq + round((ts - last_ts) * fs)``
    (relative to the previous block, so a slow drift of the server's clock against the nominal
    rate never accumulates into false gaps; a lost block shows as a gap of its length).

    A block lying entirely before the next expected sample but no further back than two block
    lengths is a repeat (a subscription re-sends the current value after a reconnect, a poll
    reads an unchanged array) and is dropped (``place`` returns None); one further back means
    the server restarted its stream: it is accepted and numbering continues from it.
    """

    def __init__(self, channel: str, sample_rate_hz: float) -> None:
        self.channel = channel
        self.fs = sample_rate_hz
        self._last: tuple[int, int] | None = None  # (sequence, source ts) of the last block
        self.next_sequence: int | None = None

    @property
    def last_ts(self) -> int | None:
        """Source timestamp of the last block accepted."""
        return None if self._last is None else self._last[1]

    def place(self, n: int, ts_ns: int, counter: int | None = None) -> Placement | None:
        if counter is not None:
            seq = counter
        elif self._last is None:
            seq = 0
        else:
            last_seq, last_ts = self._last
            seq = last_seq + math.floor((ts_ns - last_ts) * self.fs / 1e9 + 0.5)
        nxt = self.next_sequence
        if nxt is not None and seq + n <= nxt and seq >= nxt - 2 * n:
            return None  # a repeat of what was delivered
        self._last = (seq, ts_ns)
        self.next_sequence = seq + n
        if nxt is None or seq == nxt:
            return Placement(seq)
        if seq > nxt:
            return Placement(seq, lost=seq - nxt)
        if seq + n <= nxt:
            log.warning(
                "%s: the server's sample stream went back (%d -> %d): restarted",
                self.channel,
                nxt,
                seq,
            )
            return Placement(seq)
        return Placement(seq, skip=nxt - seq)  # overlaps the last block: deliver the rest
