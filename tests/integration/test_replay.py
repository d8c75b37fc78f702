"""``pdm-gateway replay``: every file format gives the live pipeline's features on the same
samples; bad inputs fail with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from gateway.config.plant import Asset, Channel
from gateway.core.records import SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.stage import DspProcessor
from simulators.machine import Fault, Machine, MachineSpec

FS = 25_600.0
CLI = [sys.executable, "-m", "gateway.cli", "replay"]


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    m = Machine(
        MachineSpec(
            acoustic_rate_hz=0, vibration_channels=2, faults=(Fault("outer_race", 0, 1, 1.0, 1.0),)
        ),
        seed=4,
    )
    snap = m.advance(1.5)
    return np.stack([b.samples for b in snap.blocks], axis=1)  # (n, 2)


def live_features(x: np.ndarray, names: list[str]) -> list[dict[str, float]]:
    """What the running gateway computes: the DSP processor fed blocks as a collector would."""
    ch = {n: Channel(kind="vibration", sample_rate_hz=FS) for n in names}
    proc = DspProcessor(DspConfig(), ch, {"replay": Asset(channels=names)}, now_ns=lambda: 0)
    frames = []
    for start in range(0, x.shape[0], 1000):  # collector-sized blocks
        for i, n in enumerate(names):
            frames += proc.process(
                [SampleBlock(n, 0, 0, FS, x[start : start + 1000, i].copy(), start)]
            )
    return [f.as_dict() | {"_channel": f.channel} for f in frames]  # type: ignore[dict-item]


def run(tmp_path: Path, *inputs: Path) -> list[dict[str, object]]:
    out = tmp_path / "out.jsonl"
    args = [a for p in inputs for a in ("--input", str(p))]
    proc = subprocess.run(
        [*CLI, *args, "--sample-rate", str(FS), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "windows per channel" in proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def write(fmt: str, path: Path, x: np.ndarray) -> None:
    if fmt == "npy":
        np.save(path, x)
    elif fmt == "csv":
        np.savetxt(path, x, delimiter=",", fmt="%.9g", header="a,b", comments="")
    else:
        wavfile.write(path, int(FS), x.astype(np.float32))


@pytest.mark.parametrize("fmt", ["npy", "csv", "wav"])
def test_replay_equals_live_features(fmt: str, samples: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / f"rec.{fmt}"
    write(fmt, path, samples)
    lines = run(tmp_path, path)
    names = ["a", "b"] if fmt == "csv" else ["rec_0", "rec_1"]
    live = live_features(samples, names)
    key = lambda d: d["channel"] if "channel" in d else d["_channel"]  # noqa: E731
    by_channel = {n: [line for line in lines if key(line) == n] for n in names}
    live_by = {n: [f for f in live if f["_channel"] == n] for n in names}
    for n in names:
        assert len(by_channel[n]) == len(live_by[n]) > 0
        for got, want in zip(by_channel[n], live_by[n], strict=True):
            feats = got["features"]
            assert isinstance(feats, dict)
            for name, value in feats.items():
                assert value == pytest.approx(want[name], rel=1e-6, abs=1e-12), (n, name)
    assert lines[0]["score"] is None


def test_two_single_channel_inputs_and_bad_files(samples: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "de.npy", samples[:, 0])
    np.save(tmp_path / "nde.npy", samples[:, 1])
    lines = run(tmp_path, tmp_path / "de.npy", tmp_path / "nde.npy")
    assert {line["channel"] for line in lines} == {"de", "nde"}
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    proc = subprocess.run(
        [*CLI, "--input", str(bad), "--sample-rate", "1000", "--out", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"pdm-gateway: {bad}: cannot read")
    assert "Traceback" not in proc.stderr
