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
    """Framing state of one channel. Holds fewer than ``window + hop`` samples between pushes,
    in two preallocated buffers (grown only for blocks longer than ``hop``) reused for the
    life of the framer; the windows a push returns are views of one, valid until the next
    push."""

    def __init__(self, window: int, hop: int) -> None:
        if not 0 < hop <= window:
            raise ValueError("need 0 < hop <= window")
        self.window, self.hop = window, hop
        # two buffers used in turn: appending copies into the other, never onto itself
        self._mem = np.empty(window + hop, dtype=np.float32)
        self._spare = np.empty(window + hop, dtype=np.float32)
        self._start = 0  # the held samples are _mem[_start : _start + _n]
        self._n = 0
        self._buf_seq = 0  # sequence of the first held sample
        self._buf_ts_ns = 0  # source time of the first held sample
        self._fs = 0.0
        self._quality = Quality.GOOD
        self.gaps = 0
        #: (windows per push, sample rate) -> start offsets of those windows (ns, samples)
        self._offsets: dict[tuple[int, float], tuple[npt.NDArray[np.int64], ...]] = {}

    def reset(self) -> None:
        self._start = self._n = 0

    def _append(self, samples: npt.NDArray[np.float32]) -> None:
        """Copy the held samples and ``samples`` to the front of the spare buffer, which then
        becomes the current one (the last push's windows, views of the other, expire now)."""
        n, add = self._n, samples.shape[0]
        spare = self._spare
        if n + add > spare.shape[0]:
            spare = np.empty(max(2 * spare.shape[0], n + add), dtype=np.float32)
        spare[:n] = self._mem[self._start : self._start + n]
        spare[n : n + add] = samples
        self._spare, self._mem = self._mem, spare
        self._start, self._n = 0, n + add

    def push(self, block: SampleBlock) -> Windows | None:
        """Add ``block``; return the windows completed by it, or None."""
        if block.quality == Quality.BAD:
            if self._n:
                self.gaps += 1
            self.reset()
            return None
        expected = self._buf_seq + self._n
        if self._n == 0 or block.sequence != expected or block.sample_rate_hz != self._fs:
            if self._n:
                self.gaps += 1
            self.reset()
            self._buf_seq, self._buf_ts_ns = block.sequence, block.source_ts_ns
            self._fs, self._quality = block.sample_rate_hz, block.quality
        else:
            self._quality = max(self._quality, block.quality)
        self._append(block.samples)
        n = self._n
        if n < self.window:
            return None
        k = 1 + (n - self.window) // self.hop
        # windows as a strided read-only view of the buffer (held samples start at 0 here)
        item = self._mem.itemsize
        view: npt.NDArray[np.float32] = np.ndarray(
            (k, self.window), np.float32, self._mem, strides=(self.hop * item, item)
        )
        view.flags.writeable = False
        fs = self._fs
        offsets = self._offsets.get((k, fs))
        if offsets is None:  # window starts after the first, in ns and in samples
            ns = np.array([round(i * self.hop / fs * 1e9) for i in range(k)], np.int64)
            offsets = self._offsets[(k, fs)] = (ns, np.arange(0, k * self.hop, self.hop))
            if len(self._offsets) > 16:  # a rate or block size that changes: keep a few
                self._offsets = {(k, fs): offsets}
        out = Windows(
            view, offsets[0] + self._buf_ts_ns, offsets[1] + self._buf_seq, fs, self._quality
        )
        consumed = k * self.hop
        self._start, self._n = consumed, n - consumed
        self._buf_seq += consumed
        self._buf_ts_ns += round(consumed / self._fs * 1e9)
        # the leftover may still hold samples of a worse block: keep the worst until a restart
        return out
