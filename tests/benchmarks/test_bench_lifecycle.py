"""Model lifecycle costs (``make bench``), each against a baseline measured in the same run:
- the stage step with a shadow candidate scoring beside the active model, against the step
  with the active model alone (goal: at most 2x, the candidate doubles the model work);
- loading an installed model encrypted at rest (read, AES-GCM decrypt in memory, sha256 and
  Ed25519 checks, interpreter), against loading the same model stored in plain."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.core.records import FeatureFrame
from gateway.dsp.features import SCHEMA_VERSION
from gateway.inference import crypto, signing
from gateway.inference.registry import Registry
from gateway.inference.scorer import load_scorer
from gateway.inference.stage import InferenceProcessor, ModelSet, open_model
from tests.benchmarks.conftest import Bench
from tests.benchmarks.timing import best_of
from tests.registry_data import config, version
from tests.unit.test_inference import FEATURES, healthy

FRAMES = 1024


def test_bench_shadow_step(tmp_path: Path, bench: Bench) -> None:
    active = load_scorer(version(tmp_path, "1"))
    shadow = load_scorer(version(tmp_path, "2"))
    rows = healthy(FRAMES, seed=3)
    frames = [
        FeatureFrame("pump", "vib", i, i + 1, 0, SCHEMA_VERSION, tuple(FEATURES), ("g",) * 4, r)
        for i, r in enumerate(rows)
    ]
    alone = InferenceProcessor(ModelSet({"pump": active}))
    paired = InferenceProcessor(ModelSet({"pump": active}, {"pump": shadow}))

    def step(proc: InferenceProcessor) -> None:
        for s in range(0, FRAMES, 64):
            proc.process(frames[s : s + 64])

    step(alone)
    step(paired)
    t_alone = best_of(lambda: step(alone))
    t_paired = best_of(lambda: step(paired))
    us = 1e6 / FRAMES
    bench.record(
        "stage step with a shadow candidate",
        t_paired * us,
        "us/frame",
        baseline=t_alone * us,
        baseline_name="active model alone",
        goal="<= 2x",
    )
    print(
        f"\n[bench] shadow: {t_paired * us:.2f} us/frame vs {t_alone * us:.2f} us/frame alone "
        f"({t_paired / t_alone:.2f}x, goal <= 2x)"
    )


def test_bench_encrypted_load(tmp_path: Path, bench: Bench) -> None:
    signing.generate(tmp_path / "p.key", tmp_path / "p.pub")
    key = tmp_path / "m.key"
    crypto.generate_key(key)
    os.chmod(key, 0o600)
    d = version(tmp_path / "src", "1")
    from gateway.cli import main

    assert main(["models", "sign", "--key", str(tmp_path / "p.key"), str(d)]) == 0
    regs = {}
    for name, extra in (("plain", {}), ("encrypted", {"encryption_key": str(key)})):
        cfg = config(tmp_path / name, trusted_keys=[str(tmp_path / "p.pub")], **extra)
        regs[name] = (Registry(cfg.models, cfg.gateway.state_dir), cfg)
        regs[name][0].install(d)

    def load(name: str) -> None:
        reg, cfg = regs[name]
        open_model(reg, cfg.models, cfg.gateway.state_dir, "test-model", "1")

    t_plain = best_of(lambda: load("plain"), repeat=9)
    t_enc = best_of(lambda: load("encrypted"), repeat=9)
    bench.record(
        "load a signed model encrypted at rest",
        t_enc * 1e3,
        "ms",
        baseline=t_plain * 1e3,
        baseline_name="the same model stored plain",
    )
    print(
        f"\n[bench] load signed model: encrypted {t_enc * 1e3:.2f} ms vs plain "
        f"{t_plain * 1e3:.2f} ms ({t_enc / t_plain:.2f}x)"
    )
