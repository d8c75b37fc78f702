"""Readers of recorded waveforms for ``pdm-gateway replay``: ``.npy``, ``.csv``, ``.wav``.

Every reader returns ``(names, samples)`` with ``samples`` float32 of shape (n, channels).
- ``.npy``: 1-D (one channel) or 2-D (n, channels) numeric arrays;
- ``.csv``: one column per channel, comma-separated, an optional header row of names;
- ``.wav``: PCM (int16/int32/uint8, scaled to [-1, 1)) or float, any number of channels.
Bad files raise ``ValueError`` with the file name and the reason.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy.io import wavfile

F32 = npt.NDArray[np.float32]
T = TypeVar("T")
FORMATS = (".npy", ".csv", ".wav")


def read_recording(path: Path) -> tuple[list[str], F32]:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported format {suffix!r} (use {', '.join(FORMATS)})")
    try:
        if suffix == ".npy":
            data = _parse(lambda: np.load(path, allow_pickle=False))
            names: list[str] = []
        elif suffix == ".csv":
            names, data = _read_csv(path)
        else:
            data = _read_wav(path)
            names = []
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0 or not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{path}: expected numeric samples of shape (n,) or (n, channels)")
    if not names:
        stem = path.stem
        names = [stem] if data.shape[1] == 1 else [f"{stem}_{i}" for i in range(data.shape[1])]
    if len(names) != data.shape[1]:
        raise ValueError(f"{path}: {len(names)} column names for {data.shape[1]} columns")
    return names, np.ascontiguousarray(data, dtype=np.float32)


def _read_csv(path: Path) -> tuple[list[str], npt.NDArray[np.float64]]:
    with path.open(newline="") as f:
        first = next(csv.reader(f), [])
    header = bool(first) and not all(_is_number(c) for c in first)
    data = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2, dtype=np.float64)
    return ([c.strip() for c in first] if header else []), data


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _parse(read: Callable[[], T]) -> T:
    """``read()``, a third-party parser of ``path``. On a malformed file these raise more than
    ``ValueError`` (``struct.error``, ``tokenize.TokenError``, ``SyntaxError``, even
    ``UnboundLocalError`` from scipy's WAV reader): any exception of theirs means the file cannot
    be read, and becomes a ``ValueError`` (which ``read_recording`` prefixes with the path)."""
    try:
        return read()
    except (OSError, ValueError, EOFError):
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ValueError(f"malformed file ({type(exc).__name__}: {exc})") from None


def _read_wav(path: Path) -> npt.NDArray[np.floating]:
    _, raw = _parse(lambda: wavfile.read(path))
    data = np.asarray(raw)
    scale = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}.get(data.dtype)
    if scale is not None:
        out: npt.NDArray[np.floating] = (data.astype(np.float64) / scale).astype(np.float32)
    elif data.dtype == np.uint8:
        out = (data.astype(np.float32) - 128.0) / 128.0
    else:
        out = data.astype(np.float32)
    return out
