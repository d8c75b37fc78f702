"""Read planning: coalesce tags into as few requests as the protocol allows."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.collectors.modbus.config import ModbusTag

MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True)
class ReadRequest:
    """One Modbus read: ``count`` registers (or bits) from ``address`` with ``function``, serving
    ``tags`` (each tag lies wholly inside the request)."""

    function: int
    address: int
    count: int
    tags: tuple[ModbusTag, ...]


def plan_reads(tags: list[ModbusTag], max_gap: int) -> list[ReadRequest]:
    """Group tags by function code and merge neighbours whose gap is at most ``max_gap`` registers,
    never exceeding 125 registers (2000 bits) per request. Deterministic: sorted by address."""
    out: list[ReadRequest] = []
    for fc in sorted({t.function for t in tags}):
        limit = MAX_BITS if fc in (1, 2) else MAX_REGISTERS
        group: list[ModbusTag] = []
        start = end = 0
        for tag in sorted((t for t in tags if t.function == fc), key=lambda t: t.address):
            t_end = tag.address + tag.register_count
            if group and tag.address - end <= max_gap and max(end, t_end) - start <= limit:
                group.append(tag)
                end = max(end, t_end)
                continue
            if group:
                out.append(ReadRequest(fc, start, end - start, tuple(group)))
            group, start, end = [tag], tag.address, t_end
        if group:
            out.append(ReadRequest(fc, start, end - start, tuple(group)))
    return out


def chunk_range(address: int, count: int, limit: int = MAX_REGISTERS) -> list[tuple[int, int]]:
    """Split a register range into ``(address, count)`` reads of at most ``limit``."""
    end = address + count
    return [(a, min(limit, end - a)) for a in range(address, end, limit)]
