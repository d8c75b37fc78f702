"""Bad input never crashes: hypothesis drives the Modbus decoders, the config loader and the
replay file readers with arbitrary input. Each either returns a well-formed result or raises the
one documented error type (``PermanentError``, ``ConfigError``, ``ValueError``) with a reason."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, get_args

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.collectors.modbus.config import DataType, WordByteOrder
from gateway.collectors.modbus.decode import decode_string, decode_values, decode_waveform
from gateway.config.loader import parse_config
from gateway.core.errors import ConfigError, PermanentError
from gateway.dsp.recordings import read_recording
from tests.conftest import EXAMPLE

registers = st.lists(st.integers(min_value=-70_000, max_value=140_000), max_size=40)


REGISTER_TYPES = [t for t in get_args(DataType) if t != "bit"]  # bits come from coils


@given(registers, st.sampled_from(REGISTER_TYPES), st.sampled_from(get_args(WordByteOrder)))
def test_decoders_return_values_or_a_permanent_error(
    regs: list[int], dtype: str, order: str
) -> None:
    try:
        out: Any = (
            decode_string(regs, order) if dtype == "string" else decode_values(regs, dtype, order)
        )
    except PermanentError as exc:
        out = exc
    if isinstance(out, PermanentError):
        assert str(out)
    elif dtype == "string":
        assert isinstance(out, str)
    else:
        assert out.ndim == 1


@given(registers, st.sampled_from(["int16", "uint16"]), st.floats(allow_nan=False, width=32))
def test_waveform_decode_is_float32_of_the_same_length(
    regs: list[int], sample_type: str, scale: float
) -> None:
    try:
        out = decode_waveform(regs, sample_type, scale)
    except PermanentError:
        assert any(not 0 <= r <= 0xFFFF for r in regs)
        return
    assert out.dtype == np.float32
    assert out.shape == (len(regs),)


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_as_config_is_ok_or_a_config_error(text: str) -> None:
    _ok_or_config_error(text)


def _ok_or_config_error(text: str) -> None:
    """Parse ``text``: fine, or a ``ConfigError`` whose every entry has a path and a reason."""
    errors: list[tuple[str, str]] = []
    try:
        parse_config(text, base_dir=Path("/nonexistent"), source="<fuzz>")
    except ConfigError as exc:
        errors = exc.errors or [("", "")]
    assert all(isinstance(p, str) and reason for p, reason in errors)


EXAMPLE_DICT = tomllib.loads(EXAMPLE.read_text())
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(EXAMPLE_DICT)


def _set(d: Any, path: tuple[Any, ...], value: Any) -> Any:
    import copy

    d = copy.deepcopy(d)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


def _toml(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return (
            "nan"
            if v != v
            else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
        )
    return str(v)


def _dump(d: dict[str, Any]) -> str:
    """A minimal TOML writer: every top-level table as one inline table (``None`` = absent)."""
    return "\n".join(f"{_toml(k)} = {_toml(v)}" for k, v in d.items() if v is not None)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), leaf)
def test_one_wrong_value_anywhere_is_a_config_error_naming_its_path(
    path: tuple[Any, ...], value: Any
) -> None:
    broken = _set(EXAMPLE_DICT, path, value)
    _ok_or_config_error(_dump(broken))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from([".npy", ".csv", ".wav"]))
def test_any_bytes_as_a_recording_read_or_value_error(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    f = tmp_path / f"rec{suffix}"
    f.write_bytes(data)
    try:
        names, samples = read_recording(f)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert str(f) in message
        return
    assert samples.dtype == np.float32
    assert samples.ndim == 2
    assert len(names) == samples.shape[1]
