"""The per-device limit on requests in flight: never more holders than slots, first come first
served, and no slot lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from gateway.collectors.modbus.slots import Slots


class Holders:
    """Tasks that take a slot, note it, and hold it until their gate opens."""

    def __init__(self, slots: Slots) -> None:
        self.slots, self.log = slots, list[str]()
        self.entered: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Event] = {}

    def start(self, name: str) -> asyncio.Task[None]:
        self.entered[name], self.gates[name] = asyncio.Event(), asyncio.Event()
        return asyncio.create_task(self._hold(name))

    async def _hold(self, name: str) -> None:
        if not self.slots.take():
            await self.slots.wait()
        self.log.append(name)
        self.entered[name].set()
        try:
            await self.gates[name].wait()
        finally:
            self.slots.release()


async def settle() -> None:
    """Let every ready task run a few steps (a waiter that could take a slot would)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Slots(0)


async def test_holders_never_exceed_slots_and_are_served_in_order() -> None:
    h = Holders(Slots(2))
    tasks = {n: h.start(n) for n in "abcde"}
    await h.entered["b"].wait()
    await settle()
    assert h.log == ["a", "b"]
    assert h.slots.free == 0
    h.gates["b"].set()
    await tasks["b"]
    await h.entered["c"].wait()
    await settle()
    assert h.log == ["a", "b", "c"]  # the oldest waiter got b's slot, the rest still wait
    for g in h.gates.values():
        g.set()
    await asyncio.gather(*tasks.values())
    assert h.log == ["a", "b", "c", "d", "e"]
    assert h.slots.free == 2
    assert h.slots.take()  # and the fast path works again


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    h = Holders(Slots(1))
    a, b, c = h.start("a"), h.start("b"), h.start("c")
    await h.entered["a"].wait()
    await settle()
    b.cancel()  # queued, never got the slot
    h.gates["a"].set()
    await a
    assert isinstance((await asyncio.gather(b, return_exceptions=True))[0], asyncio.CancelledError)
    await h.entered["c"].wait()
    assert h.log == ["a", "c"]
    h.gates["c"].set()
    await c
    assert h.slots.free == 1


async def test_a_waiter_cancelled_as_the_slot_arrives_passes_it_on() -> None:
    h = Holders(Slots(1))
    assert h.slots.take()
    b, c = h.start("b"), h.start("c")
    await settle()
    h.slots.release()  # handed to b ...
    b.cancel()  # ... which is cancelled before it runs
    assert isinstance((await asyncio.gather(b, return_exceptions=True))[0], asyncio.CancelledError)
    await h.entered["c"].wait()
    assert h.log == ["c"]
    h.gates["c"].set()
    await c
    assert h.slots.free == 1
