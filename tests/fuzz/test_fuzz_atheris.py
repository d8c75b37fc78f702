"""Coverage-guided fuzzing (atheris) of the Modbus decoders, the config loader and the replay
file readers, for a bounded number of inputs each (``tests/fuzz/targets.py``), with a fixed seed
so a run is reproducible. Each target runs in its own process: libFuzzer ends the process when
its runs are done, and saves any failing input under the test's directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.dsp.recordings import read_recording

REPO = Path(__file__).resolve().parents[2]
#: inputs per target: a few seconds each on one core
RUNS = {"modbus": 20_000, "config": 2_000, "recording": 3_000}


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    runs = RUNS[target]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.targets",
            target,
            str(tmp_path / "corpus"),
            f"-runs={runs}",
            "-seed=1",
            "-max_len=20000",
            "-timeout=20",  # per input (libFuzzer's hang detector), not a timing assertion
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert crashes == []
    assert f"Done {runs} runs" in proc.stderr


#: inputs the recording target found on which scipy's and numpy's readers raise other exception
#: types than ``ValueError`` (``UnboundLocalError``, ``struct.error``, ``tokenize.TokenError``):
#: ``read_recording`` must still report a ``ValueError`` naming the file.
KNOWN_BAD = {
    # a RIFF header whose size ends after a non-data chunk
    "bad.wav": bytes.fromhex(
        "52494646b200000057415645666d74201200000003000200401f000000fa0000080020000000666163"
        "740400000178"
    ),
    # a RIFF whose fmt chunk is cut short (struct.error)
    "short.wav": bytes.fromhex("52494646b200600057415645666d74201200ffffffff2c3365001000"),
    # a .npy header with an unclosed bracket
    "bad.npy": b"\x93NUMPY\x01\x00\x1f\x00{'descr': '<f4', 'shape': (16,\n",
}


@pytest.mark.parametrize("name", sorted(KNOWN_BAD))
def test_a_malformed_recording_is_a_value_error_naming_the_file(name: str, tmp_path: Path) -> None:
    f = tmp_path / name
    f.write_bytes(KNOWN_BAD[name])
    with pytest.raises(ValueError, match=name):
        read_recording(f)
