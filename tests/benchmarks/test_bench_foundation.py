"""Benchmarks (``make bench``): figures are ratios against a baseline measured in the same run.

Nothing here asserts a time: the printed ratios are the result. Single process, best of N.
"""

from __future__ import annotations

import struct

import numpy as np
import scipy.fft

from gateway.collectors.modbus.decode import decode_values
from gateway.core.records import SampleBlock
from gateway.dsp.features import time_domain
from gateway.dsp.framing import Framer
from tests.benchmarks.conftest import Bench
from tests.benchmarks.timing import best_of

FS = 25_600.0


def report(
    bench: Bench, name: str, ours: float, base: float, base_name: str, extra: str = ""
) -> None:
    print(
        f"\n[bench] {name}: {ours * 1e3:.2f} ms vs {base_name} {base * 1e3:.2f} ms "
        f"-> ratio {ours / base:.2f}x {extra}"
    )
    bench.record(name, ours * 1e3, "ms", baseline=base * 1e3, baseline_name=base_name)


def test_bench_framing_and_time_features_vs_rfft(bench: Bench) -> None:
    """60 s of one 25.6 kHz channel in 0.1 s blocks: framing (4096/2048) + time-domain features,
    against a bare ``scipy.fft.rfft`` of the same windows."""
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, int(60 * FS)).astype(np.float32)
    blocks = [
        SampleBlock("c", 0, 0, FS, data[i : i + 2560].copy(), i)
        for i in range(0, data.shape[0], 2560)
    ]

    def ours() -> int:
        fr = Framer(4096, 2048)
        n = 0
        for b in blocks:
            w = fr.push(b)
            if w is not None:
                n += time_domain(w.data).shape[0]
        return n

    windows = np.lib.stride_tricks.sliding_window_view(data, 4096)[::2048]

    def baseline() -> None:
        scipy.fft.rfft(windows, axis=1)

    n = ours()
    assert n == windows.shape[0]  # same windows on both sides
    t_ours, t_base = best_of(ours), best_of(baseline)
    report(
        bench,
        "framing+time features, 60 s @25.6 kHz",
        t_ours,
        t_base,
        "scipy.fft.rfft",
        f"({60 / t_ours:.0f}x real time per channel)",
    )


def test_bench_register_decode_vs_struct(bench: Bench) -> None:
    """10 000 float32 values in CDAB order: vectorised decode vs ``struct`` per value."""
    values = np.random.default_rng(1).normal(0, 100, 10_000).astype(np.float32)
    raw = values.astype(">f4").tobytes()
    words = np.frombuffer(raw, dtype=">u2").reshape(-1, 2)[:, ::-1].ravel().astype(np.uint16)
    regs = words.tolist()

    def ours() -> None:
        decode_values(regs, "float32", "CDAB")

    def baseline() -> None:
        [
            struct.unpack(">f", struct.pack(">HH", regs[i + 1], regs[i]))[0]
            for i in range(0, len(regs), 2)
        ]

    np.testing.assert_array_equal(decode_values(regs, "float32", "CDAB"), values)
    report(bench, "decode 10k float32 CDAB", best_of(ours), best_of(baseline), "struct loop")
