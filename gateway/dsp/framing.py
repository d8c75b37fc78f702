"""Per-channel framing: turn a stream of ``SampleBlock``s into overlapping windows.

Windows are ``window`` samples long and start every ``hop`` samples. A gap (a block whose
``sequence`` is not the expected one, or a block of Bad quality) restarts framing, so no window
ever spans a gap. Windows are copied out of a preallocated buffer by slices (a memcpy per window,
or one strided copy for many), never a per-sample loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.core.records import Quality, SampleBlock

FEW = 8  #: up to this many windows per push are copied one by one


@dataclass(frozen=True)
class Windows:
    """``data`` is (k, window) float32, owned by the caller (a fresh array); ``start_ts_ns`` and
    ``start_seq`` are (k,)."""

    data: npt.NDArray[np.float32]
    start_ts_ns: npt.NDArray[np.int64]
    start_seq: npt.NDArray[np.int64]
    sample_rate_hz: float
    quality: Quality

    def __len__(self) -> int:
        return int(self.data.shape[0])


class Framer:
    """Framing state of one channel: a preallocated buffer holding fewer than ``window + hop``
    samples between pushes (it grows only for a block longer than it has ever seen)."""

    def __init__(self, window: int, hop: int) -> None:
        if not 0 < hop <= window:
            raise ValueError("need 0 < hop <= window")
        self.window, self.hop = window, hop
        self._buf = np.empty(2 * window, dtype=np.float32)
        self._fill = 0  # samples held in _buf[:_fill]
        self._buf_seq = 0  # sequence of _buf[0]
        self._buf_ts_ns = 0  # source time of _buf[0]
        self._fs = 0.0
        self._quality = Quality.GOOD
        self.gaps = 0

    def reset(self) -> None:
        self._fill = 0

    def push(self, block: SampleBlock) -> Windows | None:
        """Add ``block``; return the windows completed by it, or None."""
        if block.quality == Quality.BAD:
            if self._fill:
                self.gaps += 1
            self.reset()
            return None
        samples = block.samples
        n_new = samples.shape[0]
        expected = self._buf_seq + self._fill
        if self._fill == 0 or block.sequence != expected or block.sample_rate_hz != self._fs:
            if self._fill:
                self.gaps += 1
            self._fill = 0
            self._buf_seq, self._buf_ts_ns = block.sequence, block.source_ts_ns
            self._fs, self._quality = block.sample_rate_hz, block.quality
        else:
            self._quality = max(self._quality, block.quality)
        fill = self._fill + n_new
        if fill > self._buf.shape[0]:
            grown = np.empty(fill + self.window, dtype=np.float32)
            grown[: self._fill] = self._buf[: self._fill]
            self._buf = grown
        self._buf[self._fill : fill] = samples
        self._fill = fill
        if fill < self.window:
            return None
        k = 1 + (fill - self.window) // self.hop
        hop, window, buf = self.hop, self.window, self._buf
        if k <= FEW:  # live blocks complete a window or two: a copy of each
            data = np.empty((k, window), dtype=np.float32)
            for j in range(k):
                data[j] = buf[j * hop : j * hop + window]
        else:  # a long block (replay): one strided copy
            data = np.lib.stride_tricks.sliding_window_view(buf[:fill], window)[::hop][:k].copy()
        ts0, seq0, fs = self._buf_ts_ns, self._buf_seq, self._fs
        out = Windows(
            data=data,
            start_ts_ns=np.array([ts0 + round(j * hop / fs * 1e9) for j in range(k)], np.int64),
            start_seq=np.array([seq0 + j * hop for j in range(k)], np.int64),
            sample_rate_hz=self._fs,
            quality=self._quality,
        )
        consumed = k * hop
        left = fill - consumed
        buf[:left] = buf[consumed:fill].copy()
        self._fill = left
        self._buf_seq += consumed
        self._buf_ts_ns += round(consumed / self._fs * 1e9)
        # the leftover may still hold samples of a worse block: keep the worst until a restart
        return out
