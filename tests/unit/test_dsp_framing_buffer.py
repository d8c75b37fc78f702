"""The framer's single append buffer (held samples moved to the front only when a block does
not fit behind them, grown for blocks longer than it) gives exactly the windows, start times,
sequences, qualities and gap counts of framing the whole stream at once; and the DSP
processor's frames, built without re-running ``FeatureFrame``'s checks, equal frames built
the ordinary way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.plant import Asset, Channel
from gateway.core.records import FeatureFrame, Quality, Reading, SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.framing import Framer
from gateway.dsp.stage import DspProcessor

FS = 1000.0


class Reference:
    """Framing of a stream by slicing everything held since the last restart."""

    def __init__(self, window: int, hop: int) -> None:
        self.window, self.hop = window, hop
        self.held = np.empty(0, np.float32)
        self.seq = self.ts = 0
        self.fs = 0.0
        self.quality = Quality.GOOD
        self.gaps = 0

    def push(self, b: SampleBlock) -> tuple[list[np.ndarray], list[int], list[int], Quality]:
        if b.quality == Quality.BAD:
            self.gaps += bool(self.held.size)
            self.held = self.held[:0]
            return [], [], [], self.quality
        if (
            not self.held.size
            or b.sequence != self.seq + self.held.size
            or b.sample_rate_hz != self.fs
        ):
            self.gaps += bool(self.held.size)
            self.held = self.held[:0]
            self.seq, self.ts, self.fs, self.quality = (
                b.sequence,
                b.source_ts_ns,
                b.sample_rate_hz,
                b.quality,
            )
        else:
            self.quality = max(self.quality, b.quality)
        self.held = np.concatenate((self.held, b.samples))
        k = 0 if self.held.size < self.window else 1 + (self.held.size - self.window) // self.hop
        data = [self.held[i * self.hop : i * self.hop + self.window] for i in range(k)]
        seqs = [self.seq + i * self.hop for i in range(k)]
        ts = [self.ts + round(i * self.hop / self.fs * 1e9) for i in range(k)]
        self.held = self.held[k * self.hop :]
        self.seq += k * self.hop
        self.ts += round(k * self.hop / self.fs * 1e9)
        return data, seqs, ts, self.quality


def stream(sizes: list[int], kinds: list[int]) -> list[SampleBlock]:
    """Blocks of the given sizes; kind 1 skips samples before the block (a gap), 2 is Bad,
    3 Uncertain, 4 changes the sample rate."""
    blocks, seq = [], 0
    for i, (n, kind) in enumerate(zip(sizes, kinds, strict=True)):
        seq += 7 if kind == 1 else 0
        fs = 2 * FS if kind == 4 else FS
        q = {2: Quality.BAD, 3: Quality.UNCERTAIN}.get(kind, Quality.GOOD)
        x = (np.arange(n) + 1000 * i).astype(np.float32)
        blocks.append(SampleBlock("c", 10**15 + seq * 997, 0, fs, x, seq, q))
        seq += n
    return blocks


def check(fr: Framer, blocks: list[SampleBlock]) -> None:
    ref = Reference(fr.window, fr.hop)
    for b in blocks:
        data, seqs, ts, quality = ref.push(b)
        w = fr.push(b)
        if not data:
            assert w is None
            continue
        assert w is not None
        assert not w.data.flags.writeable
        np.testing.assert_array_equal(w.data, np.array(data))
        assert w.start_seq.tolist() == seqs
        assert w.start_ts_ns.tolist() == ts
        assert w.quality == quality
        assert w.sample_rate_hz == b.sample_rate_hz
    assert fr.gaps == ref.gaps


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(0, 60),
    st.lists(
        st.tuples(st.integers(1, 150), st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4])), max_size=40
    ),
)
def test_framing_matches_slicing_the_whole_stream(
    window: int, hop: int, extra: int, steps: list[tuple[int, int]]
) -> None:
    hop = min(hop, window)
    # a small buffer: the held samples move to the front every few blocks, overlapping their
    # old place, and long blocks make it grow
    fr = Framer(window, hop, capacity=window + extra)
    check(fr, stream([n for n, _ in steps], [k for _, k in steps]))


def test_held_samples_move_to_the_front_when_a_block_does_not_fit() -> None:
    fr = Framer(window=100, hop=50, capacity=300)
    blocks = stream([120] * 10, [0] * 10)
    buffer = fr.buffer
    check(fr, blocks[:2])  # 120: 1 window, 70 held; + 120: 2 windows, 90 held from 150
    assert (fr._start, fr._n) == (150, 90)
    fr.push(blocks[2])  # 150 + 90 + 120 > 300: the 90 move to the front, then 3 windows
    assert (fr._start, fr._n) == (150, 60)
    assert fr.buffer is buffer  # no growth for a block that fits once the held ones moved
    check(Framer(100, 50, 300), blocks)


def test_a_block_longer_than_the_buffer_grows_it_and_keeps_the_held_samples() -> None:
    fr = Framer(window=100, hop=40, capacity=100)
    blocks = stream([90, 1000, 30, 5], [0, 0, 0, 0])
    check(fr, blocks)
    assert fr.buffer.shape[0] >= 1090 - 40 * 24


def test_capacity_below_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Framer(window=100, hop=50, capacity=99)


def test_advance_describes_the_windows_push_returns() -> None:
    a, b = Framer(64, 16), Framer(64, 16)
    for blk in stream([50, 70, 33, 200], [0, 0, 3, 0]):
        k = a.advance(blk)
        w = b.push(blk)
        assert k == (0 if w is None else len(w))
        if w is not None:
            np.testing.assert_array_equal(a.view(k), w.data)
            assert a.first_seq == w.start_seq[0]
            assert [a.first_ts_ns + o for o in a.offsets_ns] == w.start_ts_ns.tolist()
            assert a.span_ns == round(64 / blk.sample_rate_hz * 1e9)
            assert a.quality == w.quality


def test_processor_frames_equal_frames_built_with_their_checks() -> None:
    names = ["v1", "v2"]
    channels = {n: Channel(kind="vibration", sample_rate_hz=FS) for n in names}
    channels["spd"] = Channel(kind="speed")
    assets = {"m": Asset(channels=[*names, "spd"], speed_channel="spd")}
    proc = DspProcessor(DspConfig(window=256, hop=128), channels, assets, now_ns=lambda: 5)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(900).astype(np.float32)
    items: list[SampleBlock | Reading] = [
        SampleBlock("v1", 0, 0, FS, x[:400], 0),
        Reading("spd", 1, 0, 1500.0),  # later windows see a speed, earlier ones do not
        SampleBlock("v2", 0, 0, FS, x[:400], 0, Quality.UNCERTAIN),
        SampleBlock("v1", 400_000_000, 0, FS, x[400:], 400),
    ]
    frames = proc.process(items)
    assert len(frames) == 2 + 1 + 2 + 4  # v1, the reading, v2, v1 again
    for f in frames:
        assert type(f) is FeatureFrame
        again = FeatureFrame(
            f.asset,
            f.channel,
            f.start_ts_ns,
            f.end_ts_ns,
            f.gateway_ts_ns,
            f.schema_version,
            f.names,
            f.units,
            f.values.copy(),
            f.quality,
        )
        assert again.as_dict().keys() == f.as_dict().keys()
        np.testing.assert_array_equal(again.values, f.values)
        assert repr(again) == repr(f)
        assert not f.values.flags.writeable
        assert f.values.dtype == np.float64
        assert f.values.shape == (len(f.names),)
    orders = [f.as_dict().get("order_1x_amp") for f in frames if f.channel != "spd"]
    # the first two windows completed before the reading: no speed known for them
    assert [bool(np.isnan(o)) for o in orders] == [True] * 2 + [False] * 6
