"""The simulator's Modbus register map: one table, used by the server, ``--print-map`` and
``simulators/README.md``. Every unit (one per machine) has the same map; function codes 3 and 4
read the same registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pymodbus.client.mixin import ModbusClientMixin

from gateway.collectors.modbus.config import ModbusWaveform

_DT = ModbusClientMixin.DATATYPE

RING_BASE = 1000  #: first register of channel 0's ring
RING_LENGTH = 8192  #: samples per channel ring (one int16 register each)
CHANNEL_HEADER_BASE = 20  #: first register of channel 0's header
CHANNEL_HEADER_SIZE = 8
MAX_CHANNELS = 6
#: waveform scale per kind (physical unit per LSB): +-32.767 g, +-16.38 Pa
SCALES = {"vibration": 0.001, "acoustic": 0.0005}
KIND_CODES = {"vibration": 1, "acoustic": 2}


@dataclass(frozen=True)
class Entry:
    address: int
    type: str
    order: str
    name: str
    unit: str
    note: str = ""


#: the scalar part of the map
SCALARS: tuple[Entry, ...] = (
    Entry(0, "float32", "ABCD", "overall_rms", "g", "RMS of vib0 over the last published block"),
    Entry(2, "float32", "ABCD", "temperature", "degC"),
    Entry(4, "float32", "ABCD", "shaft_speed", "Hz"),
    Entry(6, "float32", "CDAB", "temperature", "degC", "word-swapped copy"),
    Entry(8, "int16", "AB", "temperature_x10", "0.1 degC"),
    Entry(9, "int16", "BA", "temperature_x10", "0.1 degC", "byte-swapped copy"),
    Entry(10, "uint32", "ABCD", "uptime", "s", "real seconds since the simulator started"),
    Entry(12, "uint32", "DCBA", "uptime", "s", "little-endian copy"),
    Entry(14, "uint16", "AB", "channels", "1", "number of waveform channels C"),
    Entry(15, "uint16", "AB", "ring_length", "samples", f"R = {RING_LENGTH}"),
)


def channel_entries(c: int) -> tuple[Entry, ...]:
    """Header of waveform channel ``c`` (0-based)."""
    b = CHANNEL_HEADER_BASE + CHANNEL_HEADER_SIZE * c
    return (
        Entry(
            b,
            "uint32",
            "ABCD",
            f"ch{c}.counter",
            "samples",
            "samples written; sample k is at ring + k % R",
        ),
        Entry(b + 2, "float32", "ABCD", f"ch{c}.scale", "unit/LSB"),
        Entry(b + 4, "float32", "ABCD", f"ch{c}.sample_rate", "Hz"),
        Entry(b + 6, "uint16", "AB", f"ch{c}.kind", "1", "1 vibration (g), 2 acoustic (Pa)"),
    )


def ring_address(c: int) -> int:
    return RING_BASE + RING_LENGTH * c


def register_count(channels: int) -> int:
    return ring_address(channels)


def encode(value: float, type_: str, order: str) -> list[int]:
    """Registers for one value in the given order (A = most significant byte)."""
    dt = {"float32": _DT.FLOAT32, "int16": _DT.INT16, "uint16": _DT.UINT16, "uint32": _DT.UINT32}[
        type_
    ]
    v: float | int = value if type_ == "float32" else int(value)
    regs = ModbusClientMixin.convert_to_registers(v, dt)
    if order in ("CDAB", "DCBA"):
        regs = regs[::-1]
    if order in ("BA", "BADC", "DCBA"):
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs


def to_ring(samples: npt.NDArray[np.float32], scale: float) -> npt.NDArray[np.uint16]:
    """Physical samples to int16 registers (saturating at the int16 range)."""
    raw = np.clip(np.rint(samples / scale), -32768, 32767).astype(np.int16)
    out: npt.NDArray[np.uint16] = raw.view(np.uint16)
    return out


def describe(channels: list[tuple[str, str, str, float]]) -> str:
    """The map as a text table, for ``--print-map`` and the README."""
    rows = [f"{'address':>7}  {'type':8} {'order':5} {'name':18} {'unit':9} note"]
    entries = list(SCALARS)
    for c in range(len(channels)):
        entries += channel_entries(c)
    for e in entries:
        rows.append(
            f"{e.address:>7}  {e.type:8} {e.order:5} {e.name:18} {e.unit:9} {e.note}".rstrip()
        )
    for c, (name, kind, unit, _) in enumerate(channels):
        a = ring_address(c)
        rows.append(
            f"{a:>7}  {'int16[R]':8} {'AB':5} {'ch' + str(c) + '.ring':18} "
            f"{unit:9} {name} ({kind}) samples, value = raw x scale, "
            f"registers {a}..{a + RING_LENGTH - 1}"
        )
    return "\n".join(rows)


def ring_waveform(channel: str, c: int = 0, **overrides: Any) -> ModbusWaveform:
    """The collector config that reads waveform channel ``c``'s ring of this map."""
    fields: dict[str, Any] = {
        "channel": channel,
        "ring_address": ring_address(c),
        "ring_length": RING_LENGTH,
        "sequence_address": CHANNEL_HEADER_BASE + CHANNEL_HEADER_SIZE * c,
        "scale": SCALES["vibration"],
    }
    return ModbusWaveform.model_validate({**fields, **overrides})


def device_toml(
    device: str, port: int, unit: int, vib: str, temp: str, *, period_s: float, settings: str = ""
) -> str:
    """A ``[devices.modbus.<device>]`` table reading a simulated machine: ``temp`` from the
    float32 temperature, ``vib`` from channel 0's ring polled every ``period_s``; ``settings``
    are extra ``key = value`` lines for the device."""
    w = ring_waveform(vib, period_s=period_s)
    return f"""
[devices.modbus.{device}]
host = "127.0.0.1"
port = {port}
unit_id = {unit}
{settings}
[[devices.modbus.{device}.tags]]
channel = "{temp}"
function = 4
address = 2
type = "float32"

[[devices.modbus.{device}.waveforms]]
channel = "{vib}"
ring_address = {w.ring_address}
ring_length = {w.ring_length}
sequence_address = {w.sequence_address}
scale = {w.scale}
period_s = {w.period_s}
"""
