"""Per-channel framing: turn a stream of ``SampleBlock``s into overlapping windows.

Windows are ``window`` samples long and start every ``hop`` samples. A gap (a block whose
``sequence`` is not the expected one, or a block of Bad quality) restarts framing, so no window
ever spans a gap. Vectorised: windows are strided views, never a per-sample loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.core.records import Quality, SampleBlock


@dataclass(frozen=True, slots=True)
class Windows:
    """``data`` is (k, window) float32, a read-only view valid until the next ``push``;
    ``start_ts_ns`` and ``start_seq`` are (k,)."""

    data: npt.NDArray[np.float32]
    start_ts_ns: npt.NDArray[np.int64]
    start_seq: npt.NDArray[np.int64]
    sample_rate_hz: float
    quality: Quality

    def __len__(self) -> int:
        return int(self.data.shape[0])


class Framer:
    """Framing state of one channel.

    Holds fewer than ``window`` samples between pushes, in one preallocated buffer of
    ``capacity`` samples (default three times ``window + hop``) reused for the life of the
    framer: a block is appended after the held samples, which are moved to the front of the
    buffer only when the block does not fit behind them (the buffer grows only for a block
    longer than it can hold next to them). The windows of a push are views of the buffer,
    valid until the next push.

    ``advance`` is the allocation-free step behind ``push``: it returns how many windows the
    block completed and leaves them described by ``buffer``, ``first``, ``first_seq``,
    ``first_ts_ns``, ``sample_rate_hz`` and ``quality`` until the next call.
    """

    def __init__(self, window: int, hop: int, capacity: int | None = None) -> None:
        if not 0 < hop <= window:
            raise ValueError("need 0 < hop <= window")
        self.window, self.hop = window, hop
        cap = 3 * (window + hop) if capacity is None else capacity
        if cap < window:
            raise ValueError("need capacity >= window")
        #: the samples; the held ones are buffer[_start : _start + _n]
        self.buffer = np.empty(cap, dtype=np.float32)
        self._start = 0
        self._n = 0
        self._buf_seq = 0  # sequence of the first held sample
        self._buf_ts_ns = 0  # source time of the first held sample
        #: the windows the last ``advance`` completed start at buffer[first], every ``hop``
        self.first = 0
        self.first_seq = 0
        self.first_ts_ns = 0
        self.sample_rate_hz = 0.0
        self.quality = Quality.GOOD
        self.gaps = 0
        #: (windows per push, sample rate) -> start offsets of those windows (ns, samples)
        self._offsets: dict[tuple[int, float], tuple[npt.NDArray[np.int64], ...]] = {}
        #: (windows per push, sample rate) -> start offsets in ns, as ints
        self._offsets_ns: dict[tuple[int, float], list[int]] = {}

    def reset(self) -> None:
        self._start = self._n = 0

    def _append(self, samples: npt.NDArray[np.float32]) -> None:
        """Copy ``samples`` behind the held ones, first moving those to the front of the
        buffer (or into a larger one) when there is no room behind them."""
        start, n, add = self._start, self._n, samples.shape[0]
        mem = self.buffer
        end = start + n
        if end + add > mem.shape[0]:
            if n + add > mem.shape[0]:
                mem = np.empty(max(2 * mem.shape[0], n + add), dtype=np.float32)
                mem[:n] = self.buffer[start:end]
                self.buffer = mem
            elif n:
                mem[:n] = mem[start:end]  # numpy copies overlapping ranges as if buffered
            self._start, end = 0, n
        mem[end : end + add] = samples
        self._n = n + add

    def advance(self, block: SampleBlock) -> int:
        """Add ``block``; return how many windows it completed (0 for none). Those windows
        are ``buffer[first + i * hop : first + i * hop + window]``, the first one starting at
        sample ``first_seq`` and source time ``first_ts_ns``; window ``i`` starts
        ``offsets_ns(k)[i]`` ns after it."""
        if block.quality == Quality.BAD:
            if self._n:
                self.gaps += 1
            self.reset()
            return 0
        n, fs = self._n, block.sample_rate_hz
        if n == 0 or block.sequence != self._buf_seq + n or fs != self.sample_rate_hz:
            if n:
                self.gaps += 1
            self.reset()
            self._buf_seq, self._buf_ts_ns = block.sequence, block.source_ts_ns
            self.sample_rate_hz, self.quality = fs, block.quality
        elif block.quality > self.quality:
            # the leftover may still hold samples of a worse block: keep the worst until a restart
            self.quality = block.quality
        self._append(block.samples)
        n = self._n
        if n < self.window:
            return 0
        k = 1 + (n - self.window) // self.hop
        self.first, self.first_seq, self.first_ts_ns = self._start, self._buf_seq, self._buf_ts_ns
        consumed = k * self.hop
        self._start += consumed
        self._n = n - consumed
        self._buf_seq += consumed
        self._buf_ts_ns += round(consumed / self.sample_rate_hz * 1e9)
        return k

    def offsets_ns(self, k: int) -> list[int]:
        """Start of each of ``k`` consecutive windows after the first, in ns at the current
        sample rate (cached: the list is shared, do not modify it)."""
        key = (k, self.sample_rate_hz)
        offsets = self._offsets_ns.get(key)
        if offsets is None:
            fs = self.sample_rate_hz
            offsets = [round(i * self.hop / fs * 1e9) for i in range(k)]
            if len(self._offsets_ns) >= 16:  # a rate or block size that changes: keep a few
                self._offsets_ns.clear()
            self._offsets_ns[key] = offsets
        return offsets

    def view(self, k: int) -> npt.NDArray[np.float32]:
        """The ``k`` windows the last ``advance`` completed, as a (k, window) read-only view
        of the buffer, valid until the next push."""
        item = self.buffer.itemsize
        view: npt.NDArray[np.float32] = np.ndarray(
            (k, self.window),
            np.float32,
            self.buffer,
            offset=self.first * item,
            strides=(self.hop * item, item),
        )
        view.flags.writeable = False
        return view

    def push(self, block: SampleBlock) -> Windows | None:
        """Add ``block``; return the windows completed by it, or None."""
        k = self.advance(block)
        if k == 0:
            return None
        fs = self.sample_rate_hz
        offsets = self._offsets.get((k, fs))
        if offsets is None:  # window starts after the first, in ns and in samples
            ns = np.array(self.offsets_ns(k), np.int64)
            offsets = self._offsets[(k, fs)] = (ns, np.arange(0, k * self.hop, self.hop))
            if len(self._offsets) > 16:  # a rate or block size that changes: keep a few
                self._offsets = {(k, fs): offsets}
        return Windows(
            self.view(k),
            offsets[0] + self.first_ts_ns,
            offsets[1] + self.first_seq,
            fs,
            self.quality,
        )
