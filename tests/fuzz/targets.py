"""Coverage-guided fuzz targets (atheris, libFuzzer) for the input parsers: the Modbus register
decoders, the config loader and the replay file readers.

    python -m tests.fuzz.targets TARGET CORPUS_DIR [libFuzzer options, e.g. -runs=2000]

``TARGET`` is one of ``TARGETS``; ``CORPUS_DIR`` gets the seeds (``seed``) before the run and
the inputs libFuzzer finds interesting during it. Each input must give a well-formed result or
the documented error (``PermanentError``, ``ConfigError``, ``ValueError``) with its reason; any
other exception or a failed check ends the run with a non-zero exit code and the input saved
under ``-artifact_prefix``.

Unlike the hypothesis tests (``tests/unit/test_fuzz_inputs.py``), which draw structured random
inputs, these mutate valid seeds (shipped configs, well-formed .npy/.csv/.wav files) under
coverage feedback from the gateway's own code, so they reach deep into the parsers: headers
that are almost right, TOML that is almost valid, registers passed as numpy arrays.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import atheris
import numpy as np
from scipy.io import wavfile

with atheris.instrument_imports(include=["gateway"]):
    from gateway.collectors.modbus.config import DataType, WordByteOrder
    from gateway.collectors.modbus.decode import decode_string, decode_values, decode_waveform
    from gateway.config.loader import parse_config
    from gateway.core.errors import ConfigError, PermanentError
    from gateway.dsp.recordings import FORMATS, read_recording

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.toml"))
#: the secrets the example configs read from the environment
ENV = {"INFLUX_TOKEN": "t", "PDM_OPCUA_PASSWORD": "p"}
REGISTER_TYPES = [t for t in get_args(DataType) if t not in ("bit", "string")]
ORDERS = list(get_args(WordByteOrder))
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}  # 64-bit types: 4


# -- Modbus decoders -----------------------------------------------------------------------------


def modbus(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    order = fdp.PickValueInList(ORDERS)
    dtype = fdp.PickValueInList(REGISTER_TYPES)
    n = fdp.ConsumeIntInRange(0, 48)
    lo = fdp.PickValueInList([0, 0, -70_000])
    regs_list = fdp.ConsumeIntListInRange(n, lo, 0xFFFF + (70_000 if lo else 0))
    # registers as a list or as a numpy array of any integer width (the collector passes both)
    as_array = fdp.ConsumeBool()
    regs: list[int] | np.ndarray = np.asarray(regs_list, dtype=np.int64) if as_array else regs_list
    in_range = all(0 <= r <= 0xFFFF for r in regs_list)
    try:
        if which == 0:
            values = decode_values(regs, dtype, order)
            width = WIDTH.get(dtype, 4)
            assert in_range
            assert len(regs_list) % width == 0
            assert values.dtype == np.float64
            assert values.shape == (len(regs_list) // width,)
        elif which == 1:
            text = decode_string(regs, order)
            assert in_range
            assert isinstance(text, str)
        else:
            scale = fdp.ConsumeRegularFloat()
            wave = decode_waveform(regs, fdp.PickValueInList(["int16", "uint16"]), scale)
            assert in_range
            assert wave.dtype == np.float32
            assert wave.shape == (len(regs_list),)
    except PermanentError as exc:
        error = str(exc)
    else:
        return
    assert error
    whole = len(regs_list) % WIDTH.get(dtype, 4) == 0
    # registers out of range, or not whole values (decode_values only)
    assert not in_range or (which == 0 and not whole)


def modbus_seeds() -> list[bytes]:
    return [bytes(range(i, i + 64)) for i in range(0, 192, 32)]


# -- config loader -------------------------------------------------------------------------------


def config(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        parse_config(text, base_dir=Path("/nonexistent"), env=ENV, source="<fuzz>")
    except ConfigError as exc:
        errors = exc.errors
    else:
        return
    assert errors
    for path, reason in errors:
        assert isinstance(path, str)
        assert isinstance(reason, str)
        assert reason


def config_seeds() -> list[bytes]:
    return [p.read_bytes() for p in EXAMPLES]


# -- replay file readers -------------------------------------------------------------------------

_DIR = Path(tempfile.mkdtemp(prefix="pdm-fuzz-"))


def recording(data: bytes) -> None:
    if not data:
        return
    suffix = FORMATS[data[0] % len(FORMATS)]
    f = _DIR / f"rec{suffix}"
    f.write_bytes(data[1:])
    error = ""
    try:
        names, samples = read_recording(f)
    except ValueError as exc:
        error = str(exc)
    if error:
        assert str(f) in error
        return
    assert samples.dtype == np.float32
    assert samples.ndim == 2
    assert samples.shape[0] > 0
    assert len(names) == samples.shape[1]


def recording_seeds() -> list[bytes]:
    seeds = []
    rng = np.random.default_rng(0)
    for arr in (rng.normal(size=16).astype(np.float32), rng.integers(-9, 9, (8, 3), np.int16)):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        seeds.append(bytes([FORMATS.index(".npy")]) + buf.getvalue())
    csv = b"x,y\n0.5,1\n-2,3e-3\n4,nan\n"
    seeds += [bytes([FORMATS.index(".csv")]) + csv, bytes([FORMATS.index(".csv")]) + b"1\n2\n"]
    for arr in (rng.integers(-999, 999, 32, np.int16), rng.normal(size=(16, 2)).astype(np.float32)):
        buf = io.BytesIO()
        wavfile.write(buf, 8000, arr)
        seeds.append(bytes([FORMATS.index(".wav")]) + buf.getvalue())
    return seeds


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "modbus": (modbus, modbus_seeds),
    "config": (config, config_seeds),
    "recording": (recording, recording_seeds),
}


def main(argv: list[str]) -> None:
    target, seeds = TARGETS[argv[1]]
    corpus = Path(argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([argv[0], str(corpus), *argv[3:]], target)
    atheris.Fuzz()  # (libFuzzer exits the process when the runs are done)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv)
