"""Pure, vectorised decoding of Modbus registers (no I/O, no per-register Python loop).

Registers arrive as 16-bit words; on the wire each word is big-endian. ``order`` names the byte
layout of a multi-register value with A the most significant byte:

- ABCD: big-endian (words high first, bytes high first), the Modbus default;
- CDAB: word-swapped (low word first), common on PLCs;
- BADC: byte-swapped inside each word;
- DCBA: little-endian.

For 64-bit values the same rule extends to four words (ABCDEFGH and its swaps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gateway.core.errors import PermanentError

_NUMPY_TYPES: dict[str, str] = {
    "int16": ">i2",
    "uint16": ">u2",
    "int32": ">i4",
    "uint32": ">u4",
    "int64": ">i8",
    "uint64": ">u8",
    "float32": ">f4",
    "float64": ">f8",
}


def as_words(registers: Sequence[int] | npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    """Registers as a uint16 array; values outside 0..65535 are a ``PermanentError``."""
    if isinstance(registers, np.ndarray):
        if registers.dtype == np.uint16:
            return registers
        if registers.size and (registers.min() < 0 or registers.max() > 0xFFFF):
            raise PermanentError("register value outside 0..65535")
        return registers.astype(np.uint16)
    try:  # one pass: numpy refuses Python ints outside the dtype's range
        return np.asarray(registers, dtype=np.uint16)
    except OverflowError:
        raise PermanentError("register value outside 0..65535") from None


def _canonical_bytes(words: npt.NDArray[np.uint16], width: int, order: str) -> bytes:
    """Reorder ``words`` (a multiple of ``width`` words) into big-endian bytes per value."""
    w = words.reshape(-1, width)
    if order in ("CDAB", "DCBA"):
        w = w[:, ::-1]
    big = w.astype(">u2")
    if order in ("BADC", "DCBA"):
        big = big.byteswap()
    return big.tobytes()


def decode_values(
    registers: Sequence[int] | npt.NDArray[np.uint16], dtype: str, order: str = "ABCD"
) -> npt.NDArray[np.float64]:
    """Decode consecutive values of ``dtype`` from ``registers`` as float64.

    ``len(registers)`` must be a multiple of the type's register width. 16-bit types honour only
    the byte swap (BADC, DCBA). 64-bit integers beyond 2**53 lose precision in float64.
    """
    if dtype not in _NUMPY_TYPES:
        raise ValueError(f"not a numeric register type: {dtype}")
    np_type = np.dtype(_NUMPY_TYPES[dtype])
    width = np_type.itemsize // 2
    words = as_words(registers)
    if words.shape[0] % width:
        raise PermanentError(f"{words.shape[0]} registers do not hold whole {dtype} values")
    raw = np.frombuffer(_canonical_bytes(words, width, order), dtype=np_type)
    return raw.astype(np.float64)


def decode_string(registers: Sequence[int] | npt.NDArray[np.uint16], order: str = "ABCD") -> str:
    """Two ASCII/UTF-8 characters per register, trailing NULs and spaces stripped."""
    words = as_words(registers)
    swap = order in ("BADC", "DCBA")
    data = (words.astype("<u2") if swap else words.astype(">u2")).tobytes()
    return data.decode("utf-8", errors="replace").rstrip("\x00 ")


def decode_waveform(
    registers: Sequence[int] | npt.NDArray[np.uint16],
    sample_type: str = "int16",
    scale: float = 1.0,
    offset: float = 0.0,
) -> npt.NDArray[np.float32]:
    """Waveform registers (one sample per register) to float32 physical values."""
    words = as_words(registers)
    out = (words.view(np.int16) if sample_type == "int16" else words).astype(np.float32)
    out *= np.float32(scale)
    if offset:
        out += np.float32(offset)
    return out


def decode_uint32(registers: Sequence[int], order: str = "ABCD") -> int:
    """One uint32 (a sequence counter) from two registers."""
    return int(decode_values(registers, "uint32", order)[0])
