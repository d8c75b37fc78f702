"""LiteRT interpreter wrapper: float32 or full-int8 models, batched, a fixed thread count.

``ModelRunner.run(z)`` scores rows ``z`` (n, F) float32 and returns (n,) float64. Batches are
padded to a power of two up to ``max_batch`` (larger inputs are split), and one interpreter is
kept per padded size, so no tensor is ever re-allocated after warm-up. int8 models get their
input quantised and their output dequantised with the tensors' own scale and zero point.
Not thread-safe: one caller at a time (the inference stage runs it on its own worker thread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - only when just tflite_runtime is installed
    from tflite_runtime.interpreter import Interpreter

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class _Bound:
    """One interpreter allocated for a batch of ``size`` rows."""

    def __init__(self, content: bytes, threads: int, size: int) -> None:
        self.it: Any = Interpreter(model_content=content, num_threads=threads)
        inp, out = self.it.get_input_details()[0], self.it.get_output_details()[0]
        if int(inp["shape"][0]) != size:
            self.it.resize_tensor_input(inp["index"], [size, int(inp["shape"][1])])
        self.it.allocate_tensors()
        self.inp_index, self.out_index = int(inp["index"]), int(out["index"])
        self.buf = np.zeros((size, int(inp["shape"][1])), dtype=inp["dtype"])


class ModelRunner:
    def __init__(self, content: bytes, threads: int = 1, max_batch: int = 64) -> None:
        self.content, self.threads = content, threads
        self.max_batch = 1 << (max(1, max_batch) - 1).bit_length()
        probe: Any = Interpreter(model_content=content, num_threads=threads)
        inp, out = probe.get_input_details()[0], probe.get_output_details()[0]
        shape = list(inp["shape"])
        if len(shape) != 2:
            raise ValueError(f"model input must be (batch, features), it is {shape}")
        self.n_features = int(shape[1])
        self.in_dtype = np.dtype(inp["dtype"])
        self.out_dtype = np.dtype(out["dtype"])
        if self.in_dtype not in (np.float32, np.int8) or self.out_dtype not in (
            np.float32,
            np.int8,
        ):
            raise ValueError(f"unsupported model types {self.in_dtype} -> {self.out_dtype}")
        self.in_scale, self.in_zp = (float(v) for v in inp["quantization"])
        self.out_scale, self.out_zp = (float(v) for v in out["quantization"])
        self._bound: dict[int, _Bound] = {}

    @property
    def int8(self) -> bool:
        return bool(self.in_dtype == np.int8)

    def _for(self, n: int) -> _Bound:
        size = min(self.max_batch, 1 << (n - 1).bit_length())
        b = self._bound.get(size)
        if b is None:
            b = self._bound[size] = _Bound(self.content, self.threads, size)
        return b

    def run(self, z: F32) -> F64:
        """Scores of the rows of ``z`` (n, F)."""
        if z.ndim != 2 or z.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) rows, got {z.shape}")
        out = np.empty(z.shape[0], dtype=np.float64)
        for start in range(0, z.shape[0], self.max_batch):
            part = z[start : start + self.max_batch]
            n = part.shape[0]
            b = self._for(n)
            if self.int8:
                q = np.rint(part / np.float32(self.in_scale)) + np.float32(self.in_zp)
                np.clip(q, -128, 127, out=q)
                b.buf[:n] = q
            else:
                b.buf[:n] = part
            b.it.set_tensor(b.inp_index, b.buf)
            b.it.invoke()
            y = b.it.get_tensor(b.out_index)[:n]
            if self.out_dtype == np.int8:
                out[start : start + n] = (y.astype(np.float64) - self.out_zp) * self.out_scale
            else:
                out[start : start + n] = y
        return out
