"""Write the baseline scoring model as a LiteRT (``.tflite``) flatbuffer, without TensorFlow.

The graph scores standardised feature rows ``z`` (batch, F) float32:

    r = FULLY_CONNECTED(z, W, b)      (batch, F)   whitened reconstruction residual
    s = MEAN(MUL(r, r), axis=1)       (batch,)     the score

The batch dimension is dynamic (shape signature ``[-1, F]``). ``quantize_int8`` turns it into a
full-int8 model (int8 input and output, int8 activations and weights, int32 bias) with LiteRT's own
post-training calibration, fed with representative rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import flatbuffers
import numpy as np
import numpy.typing as npt
from ai_edge_litert import schema_py_generated as S

F32 = npt.NDArray[np.float32]


def _tensor(
    name: str, shape: list[int], ttype: int, buffer: int, sig: list[int] | None = None
) -> S.TensorT:
    t = S.TensorT()
    t.name = name
    t.shape = shape
    t.shapeSignature = sig
    t.type = ttype
    t.buffer = buffer
    return t


def _buffer(data: bytes | None = None) -> S.BufferT:
    b = S.BufferT()
    if data is not None:
        b.data = np.frombuffer(data, dtype=np.uint8)
    return b


def _opcode(code: int) -> S.OperatorCodeT:
    oc = S.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 1
    return oc


def build_residual_model(weight: F32, bias: F32 | None = None, description: str = "") -> bytes:
    """The float32 model for ``W`` (F_out, F_in) and ``b`` (F_out,): score = mean((z W^T + b)^2)."""
    w = np.ascontiguousarray(weight, dtype=np.float32)
    f_out, f_in = w.shape
    b = np.zeros(f_out, np.float32) if bias is None else np.asarray(bias, np.float32)
    buffers = [
        _buffer(),
        _buffer(),  # input
        _buffer(w.tobytes()),
        _buffer(b.tobytes()),
        _buffer(),  # residual
        _buffer(),  # squared
        _buffer(np.array([1], np.int32).tobytes()),
        _buffer(),  # score
    ]
    f32, i32 = S.TensorType.FLOAT32, S.TensorType.INT32
    tensors = [
        _tensor("features", [1, f_in], f32, 1, [-1, f_in]),
        _tensor("weight", [f_out, f_in], f32, 2),
        _tensor("bias", [f_out], f32, 3),
        _tensor("residual", [1, f_out], f32, 4, [-1, f_out]),
        _tensor("squared", [1, f_out], f32, 5, [-1, f_out]),
        _tensor("axis", [1], i32, 6),
        _tensor("score", [1], f32, 7, [-1]),
    ]
    fc = S.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 0, [0, 1, 2], [3]
    fc.builtinOptionsType = S.BuiltinOptions.FullyConnectedOptions
    fc.builtinOptions = S.FullyConnectedOptionsT()
    mul = S.OperatorT()
    mul.opcodeIndex, mul.inputs, mul.outputs = 1, [3, 3], [4]
    mul.builtinOptionsType = S.BuiltinOptions.MulOptions
    mul.builtinOptions = S.MulOptionsT()
    mean = S.OperatorT()
    mean.opcodeIndex, mean.inputs, mean.outputs = 2, [4, 5], [6]
    mean.builtinOptionsType = S.BuiltinOptions.ReducerOptions
    red = S.ReducerOptionsT()
    red.keepDims = False
    mean.builtinOptions = red

    sg = S.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs = tensors, [0], [6]
    sg.operators = [fc, mul, mean]
    sg.name = "main"

    sig = S.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    tin, tout = S.TensorMapT(), S.TensorMapT()
    tin.name, tin.tensorIndex = "features", 0
    tout.name, tout.tensorIndex = "score", 6
    sig.inputs, sig.outputs = [tin], [tout]

    model = S.ModelT()
    model.version = 3
    model.description = description
    model.operatorCodes = [
        _opcode(S.BuiltinOperator.FULLY_CONNECTED),
        _opcode(S.BuiltinOperator.MUL),
        _opcode(S.BuiltinOperator.MEAN),
    ]
    model.subgraphs = [sg]
    model.buffers = buffers
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(1024 + 8 * w.size)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def quantize_int8(model: bytes, representative: Iterable[F32]) -> bytes:
    """Full-int8 version of ``model`` calibrated on ``representative`` batches (each (n, F))."""
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as cw

    cal = cw.CalibrationWrapper(model, [], [])
    prepared = False
    for batch in representative:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not prepared:
            cal.Prepare([list(x.shape)])
            prepared = True
        cal.FeedTensor([x])
    if not prepared:
        raise ValueError("int8 quantisation needs at least one representative batch")
    i8 = np.dtype(np.int8).num
    out = cal.QuantizeModel(i8, i8, False, i8, np.dtype(np.int32).num, False, False)
    return bytes(out)
