"""Inference overhead (``make bench``), in microseconds per frame against a bare
``interpreter.invoke()`` loop (one row per invoke, tensors set and read directly) on the same
``.tflite`` in the same run, float32 and int8:
- the scorer (normalisation, quantisation, padded batches of 64, dequantisation), batched and
  one row at a time;
- the whole stage step (frames in, frames and ``Score`` records out), batched and unbatched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from gateway.core.records import FeatureFrame
from gateway.dsp.features import SCHEMA_VERSION
from gateway.inference.scorer import load_scorer
from gateway.inference.stage import InferenceProcessor
from tests.benchmarks.conftest import Bench
from tests.benchmarks.timing import best_of
from tests.unit.test_inference import FEATURES, healthy, make_model

FRAMES = 1024


def bare_loop(content: bytes, rows: np.ndarray) -> Callable[[], None]:
    """A loop of one ``invoke()`` per row on a batch-1 interpreter."""
    it = Interpreter(model_content=content, num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.allocate_tensors()
    x = rows.astype(inp["dtype"])
    i_in, i_out = inp["index"], out["index"]

    def run() -> None:
        for r in x:
            it.set_tensor(i_in, r[None, :])
            it.invoke()
            it.get_tensor(i_out)

    return run


@pytest.mark.parametrize("int8", [False, True])
def test_bench_inference_vs_bare_invoke(tmp_path: Path, int8: bool, bench: Bench) -> None:
    d = make_model(tmp_path, int8=int8)
    scorer = load_scorer(d, threads=1, max_batch=64)
    rows = healthy(FRAMES, seed=3)
    frames = [
        FeatureFrame("pump", "vib", i, i + 1, 0, SCHEMA_VERSION, tuple(FEATURES), ("g",) * 4, r)
        for i, r in enumerate(rows)
    ]
    proc = InferenceProcessor({"pump": scorer})
    scale = scorer.runner.in_scale if int8 else 1.0
    content = (d / "model.tflite").read_bytes()
    bare = bare_loop(content, np.clip(np.rint(rows / scale), -128, 127) if int8 else rows)

    x = rows[:, : len(FEATURES)]

    def scorer_batched() -> None:
        for s in range(0, FRAMES, 64):
            scorer.score(x[s : s + 64])

    def scorer_single() -> None:
        for s in range(FRAMES):
            scorer.score(x[s : s + 1])

    def batched() -> None:
        for s in range(0, FRAMES, 64):
            proc.process(frames[s : s + 64])

    def unbatched() -> None:
        for f in frames:
            proc.process([f])

    batched()
    unbatched()
    t_bare = best_of(bare)
    t_sb = best_of(scorer_batched)
    t_s1 = best_of(scorer_single)
    t_batched = best_of(batched)
    t_unbatched = best_of(unbatched)
    us = 1e6 / FRAMES
    kind = "int8" if int8 else "float32"
    print(
        f"\n[bench] inference {kind}, {len(FEATURES)} features: bare invoke loop "
        f"{t_bare * us:.2f} us/frame; scorer batched {t_sb * us:.2f} us/frame "
        f"({t_sb / t_bare:.2f}x bare, goal <= 1.2x), one row per call {t_s1 * us:.2f} us/frame "
        f"({t_s1 / t_bare:.2f}x); stage step with records batched {t_batched * us:.2f} us/frame "
        f"({t_batched / t_bare:.2f}x), unbatched {t_unbatched * us:.2f} us/frame "
        f"({t_unbatched / t_bare:.2f}x)"
    )
    base = "bare interpreter.invoke() loop"
    bench.record(
        f"{kind} scorer, batched",
        t_sb * us,
        "us/frame",
        baseline=t_bare * us,
        baseline_name=base,
        goal="<= 1.2x",
    )
    bench.record(
        f"{kind} stage step with records, batched",
        t_batched * us,
        "us/frame",
        baseline=t_bare * us,
        baseline_name=base,
    )
    bench.record(
        f"{kind} stage step, one frame per call",
        t_unbatched * us,
        "us/frame",
        baseline=t_bare * us,
        baseline_name=base,
    )
