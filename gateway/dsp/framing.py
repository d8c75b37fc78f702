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
    ``first_ts_ns``, ``offsets_ns``, ``span_ns``, ``sample_rate_hz`` and ``quality`` until
    the next call.
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
        self.offsets_ns: list[int] = []  # shared with a cache: never modified
        self.sample_rate_hz = 0.0
        self.span_ns = 0  #: a window's duration at that rate
        self.quality = Quality.GOOD
        self.gaps = 0
        #: windows per push -> ``_steps`` at the current sample rate
        self._step_cache: dict[int, tuple[list[int], int]] = {}

    def reset(self) -> None:
        self._start = self._n = 0

    def _make_room(self, add: int) -> None:
        """Make room for ``add`` samples behind the held ones: move those to the front of the
        buffer, or into a larger one when they and ``add`` more do not fit in it."""
        start, n = self._start, self._n
        mem = self.buffer
        if n + add > mem.shape[0]:
            grown = np.empty(max(2 * mem.shape[0], n + add), dtype=np.float32)
            grown[:n] = mem[start : start + n]
            self.buffer = grown
        elif n:
            mem[:n] = mem[start : start + n]  # numpy copies overlapping ranges as if buffered
        self._start = 0

    def _steps(self, k: int) -> tuple[list[int], int]:
        """For ``k`` windows at the current sample rate: each window's start after the first
        (ns) and the time ``k`` hops span (ns). Cached per rate."""
        steps = self._step_cache.get(k)
        if steps is None:
            fs, hop = self.sample_rate_hz, self.hop
            steps = ([round(i * hop / fs * 1e9) for i in range(k)], round(k * hop / fs * 1e9))
            if len(self._step_cache) >= 16:  # a block size that changes: keep a few
                self._step_cache.clear()
            self._step_cache[k] = steps
        return steps

    def advance(self, block: SampleBlock) -> int:
        """Add ``block``; return how many windows it completed (0 for none). Those windows
        are ``buffer[first + i * hop : first + i * hop + window]``, the first one starting at
        sample ``first_seq`` and source time ``first_ts_ns``, window ``i`` ``offsets_ns[i]``
        ns after it; each spans ``span_ns``."""
        quality = block.quality
        if quality == Quality.BAD:
            if self._n:
                self.gaps += 1
            self.reset()
            return 0
        n, fs = self._n, block.sample_rate_hz
        if n == 0 or block.sequence != self._buf_seq + n or fs != self.sample_rate_hz:
            if n:
                self.gaps += 1
            self._start = n = self._n = 0
            self._buf_seq, self._buf_ts_ns = block.sequence, block.source_ts_ns
            self.quality = quality
            if fs != self.sample_rate_hz:
                self.sample_rate_hz = fs
                self.span_ns = round(self.window / fs * 1e9)
                self._step_cache.clear()
        elif quality > self.quality:
            # the leftover may still hold samples of a worse block: keep the worst until a restart
            self.quality = quality
        samples = block.samples
        add = len(samples)
        if self._start + n + add > self.buffer.shape[0]:
            self._make_room(add)
        end = self._start + n
        self.buffer[end : end + add] = samples
        n += add
        window = self.window
        if n < window:
            self._n = n
            return 0
        k = 1 + (n - window) // self.hop
        self.offsets_ns, elapsed_ns = self._steps(k)
        self.first, self.first_seq, self.first_ts_ns = self._start, self._buf_seq, self._buf_ts_ns
        consumed = k * self.hop
        self._start += consumed
        self._n = n - consumed
        self._buf_seq += consumed
        self._buf_ts_ns += elapsed_ns
        return k

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
        return Windows(
            self.view(k),
            np.array(self.offsets_ns, np.int64) + self.first_ts_ns,
            np.arange(self.first_seq, self.first_seq + k * self.hop, self.hop, dtype=np.int64),
            self.sample_rate_hz,
            self.quality,
        )
