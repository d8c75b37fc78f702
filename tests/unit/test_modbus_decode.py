"""Modbus decoding against struct-packed references, for every type and byte/word order."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.collectors.modbus.config import ModbusTag
from gateway.collectors.modbus.decode import decode_string, decode_values, decode_waveform
from gateway.collectors.modbus.plan import chunk_range, plan_reads
from gateway.core.errors import PermanentError

FMT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def encode(value: float, dtype: str, order: str) -> list[int]:
    """Reference encoder: pack big-endian, then apply the named layout to the bytes."""
    raw = struct.pack(">" + FMT[dtype], value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("int16", -12345),
        ("uint16", 54321),
        ("int32", -123456789),
        ("uint32", 3_000_000_000),
        ("int64", -(2**40) - 7),
        ("uint64", 2**52 + 3),
        ("float32", 3.5),
        ("float64", -1.0e-9),
    ],
)
def test_every_type_and_order(dtype: str, value: float, order: str) -> None:
    regs = encode(value, dtype, order)
    assert decode_values(regs, dtype, order)[0] == pytest.approx(value, rel=1e-7)


def test_float32_cdab_known_bytes() -> None:
    # 123.456 = 0x42F6E979: ABCD -> [0x42F6, 0xE979], CDAB -> [0xE979, 0x42F6]
    assert decode_values([0xE979, 0x42F6], "float32", "CDAB")[0] == pytest.approx(123.456, rel=1e-6)
    assert decode_values([0x42F6, 0xE979], "float32", "ABCD")[0] == pytest.approx(123.456, rel=1e-6)


@given(
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
)
def test_vectorised_float32_roundtrip(values: list[float], order: str) -> None:
    regs = [r for v in values for r in encode(v, "float32", order)]
    np.testing.assert_array_equal(decode_values(regs, "float32", order), np.float32(values))


def test_nan_decodes_as_nan() -> None:
    assert np.isnan(decode_values(encode(float("nan"), "float32", "ABCD"), "float32")[0])


def test_bad_register_counts_and_values_are_permanent_errors() -> None:
    with pytest.raises(PermanentError):
        decode_values([1, 2, 3], "float32")
    with pytest.raises(PermanentError):
        decode_values([70000, 1], "uint32")


def test_string_and_waveform() -> None:
    assert decode_string([0x4142, 0x4300]) == "ABC"
    assert decode_string([0x4241, 0x0043], "BADC") == "ABC"
    w = decode_waveform([0xFFFF, 1, 0x8000], "int16", scale=0.5, offset=1.0)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, [0.5, 1.5, -16383.0])


def tag(address: int, type_: str = "uint16", function: int = 3) -> ModbusTag:
    return ModbusTag(channel="c", function=function, address=address, type=type_)  # type: ignore[arg-type]


def test_plan_coalesces_within_gap_and_limit() -> None:
    tags = [tag(0), tag(1, "float32"), tag(10), tag(30), tag(0, "bit", 1), tag(1, "bit", 1)]
    plan = plan_reads(tags, max_gap=8)
    assert [(r.function, r.address, r.count) for r in plan] == [(1, 0, 2), (3, 0, 11), (3, 30, 1)]
    far = plan_reads([tag(0), tag(124), tag(125)], max_gap=200)
    assert [(r.address, r.count) for r in far] == [(0, 125), (125, 1)]  # never over 125


def test_chunk_range() -> None:
    assert chunk_range(100, 300) == [(100, 125), (225, 125), (350, 50)]
