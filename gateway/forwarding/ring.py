"""Recent raw samples per waveform channel, and the byte count of everything collected.

``RawTap`` sits on the ``samples`` queue (``TappedQueue`` calls it for every accepted item): it
counts bytes collected per asset (waveform samples at 4 bytes each, as float32; a scalar reading
8 bytes) and keeps the last ``ring_s`` seconds of each waveform channel in a ``RawRing`` for
snapshots. Everything runs on the event loop and costs one array copy per block.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from gateway.core.records import FloatArray, Reading, SampleBlock
from gateway.runtime.config import WhenFull as Policy
from gateway.runtime.queues import BoundedQueue

READING_BYTES = 8


class RawRing:
    """The blocks of one channel covering at least the last ``span_s`` seconds (oldest first)."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.blocks: deque[SampleBlock] = deque()
        self._samples = 0

    def add(self, block: SampleBlock) -> None:
        if self.blocks and block.sample_rate_hz != self.blocks[-1].sample_rate_hz:
            self.blocks.clear()
            self._samples = 0
        self.blocks.append(block)
        self._samples += len(block.samples)
        keep = int(self.span_s * block.sample_rate_hz)
        while self.blocks and self._samples - len(self.blocks[0].samples) >= keep:
            self._samples -= len(self.blocks.popleft().samples)

    def last(self, seconds: float) -> tuple[int, float, FloatArray] | None:
        """The last ``seconds`` of samples as ``(start_ts_ns, sample_rate_hz, samples)`` (fewer if
        the ring holds less; ``None`` if empty). Timestamps follow the newest block's."""
        if not self.blocks:
            return None
        fs = self.blocks[-1].sample_rate_hz
        data = np.concatenate([b.samples for b in self.blocks])
        n = min(len(data), max(1, round(seconds * fs)))
        tail = data[-n:]
        end_ns = self.blocks[-1].source_ts_ns + int(len(self.blocks[-1].samples) / fs * 1e9)
        return end_ns - int(n / fs * 1e9), fs, tail


class RawTap:
    """Counts collected bytes per asset and fills one ``RawRing`` per waveform channel.
    ``asset_of`` maps a channel to its asset (channels of no asset count under ``""``); only
    ``ring_channels`` get a ring."""

    def __init__(self, asset_of: dict[str, str], ring_s: float, ring_channels: set[str]) -> None:
        self.asset_of = asset_of
        self.ring_channels = ring_channels
        self.ring_s = ring_s
        self.rings: dict[str, RawRing] = {}
        self.collected_bytes: dict[str, int] = {}

    def __call__(self, item: SampleBlock | Reading) -> None:
        asset = self.asset_of.get(item.channel, "")
        if isinstance(item, SampleBlock):
            n = int(item.samples.nbytes)
            ring = self.rings.get(item.channel)
            if ring is None and item.channel in self.ring_channels:
                ring = self.rings[item.channel] = RawRing(self.ring_s)
            if ring is not None:
                ring.add(item)
        else:
            n = READING_BYTES
        self.collected_bytes[asset] = self.collected_bytes.get(asset, 0) + n

    def many(self, items: Iterable[SampleBlock | Reading]) -> None:
        """``self(item)`` for each of ``items``, in order."""
        if self.ring_channels:
            for item in items:
                self(item)
            return
        asset_of, collected = self.asset_of, self.collected_bytes
        for item in items:  # (no snapshots anywhere: bytes counted, nothing kept)
            asset = asset_of.get(item.channel, "")
            n = item.samples.nbytes if isinstance(item, SampleBlock) else READING_BYTES
            collected[asset] = collected.get(asset, 0) + n


class TappedQueue(BoundedQueue[SampleBlock | Reading]):
    """A ``BoundedQueue`` that shows every item it is given to ``tap`` first (items the policy
    then drops were still collected)."""

    def __init__(self, name: str, maxsize: int, policy: Policy, tap: RawTap) -> None:
        super().__init__(name, maxsize, policy)
        self.tap = tap

    async def put(self, item: SampleBlock | Reading) -> bool:
        self.tap(item)
        return await super().put(item)

    async def put_many(self, items: Iterable[SampleBlock | Reading]) -> int:
        items = list(items)
        self.tap.many(items)
        return await super().put_many(items)
