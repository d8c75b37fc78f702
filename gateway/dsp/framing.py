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


@dataclass(frozen=True)
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
    """Framing state of one channel. Holds fewer than ``window + hop`` samples between pushes."""

    def __init__(self, window: int, hop: int) -> None:
        if not 0 < hop <= window:
            raise ValueError("need 0 < hop <= window")
        self.window, self.hop = window, hop
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_seq = 0  # sequence of _buf[0]
        self._buf_ts_ns = 0  # source time of _buf[0]
        self._fs = 0.0
        self._quality = Quality.GOOD
        self.gaps = 0

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)

    def push(self, block: SampleBlock) -> Windows | None:
        """Add ``block``; return the windows completed by it, or None."""
        if block.quality == Quality.BAD:
            if self._buf.size:
                self.gaps += 1
            self.reset()
            return None
        expected = self._buf_seq + self._buf.shape[0]
        if self._buf.size == 0 or block.sequence != expected or block.sample_rate_hz != self._fs:
            if self._buf.size:
                self.gaps += 1
            self._buf = np.array(block.samples, dtype=np.float32)
            self._buf_seq, self._buf_ts_ns = block.sequence, block.source_ts_ns
            self._fs, self._quality = block.sample_rate_hz, block.quality
        else:
            self._buf = np.concatenate((self._buf, block.samples))
            self._quality = max(self._quality, block.quality)
        n = self._buf.shape[0]
        if n < self.window:
            return None
        k = 1 + (n - self.window) // self.hop
        view = np.lib.stride_tricks.sliding_window_view(self._buf, self.window)[:: self.hop][:k]
        offsets = np.arange(k, dtype=np.int64) * self.hop
        out = Windows(
            data=view,
            start_ts_ns=self._buf_ts_ns + np.round(offsets / self._fs * 1e9).astype(np.int64),
            start_seq=self._buf_seq + offsets,
            sample_rate_hz=self._fs,
            quality=self._quality,
        )
        consumed = k * self.hop
        self._buf = self._buf[consumed:].copy()
        self._buf_seq += consumed
        self._buf_ts_ns += round(consumed / self._fs * 1e9)
        # the leftover may still hold samples of a worse block: keep the worst until a restart
        return out
