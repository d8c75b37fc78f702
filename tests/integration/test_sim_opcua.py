"""The OPC UA machine simulator against a real asyncua client on loopback.

Time is driven by a ``FakeClock`` and ``plant.step()`` so blocks are deterministic; every wait
is on a queue filled by the subscription handler, with ``asyncio.timeout`` only as a hang guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from asyncua import Client, Node, ua
from asyncua.ua.uaerrors import UaError

from gateway.core.clock import FakeClock
from gateway.core.errors import ResourceUnavailableError
from gateway.demo import free_port
from simulators.machine import Machine, MachineSpec
from simulators.opcua_server import MachineOpcUaServer
from simulators.plant import Plant

GUARD_S = 30.0
TICK_S = 0.1


def make_machine(name: str = "m1", seed: int = 1) -> Machine:
    return Machine(MachineSpec(name=name, vibration_rate_hz=5120, acoustic_rate_hz=8000), seed=seed)


class Handler:
    """Subscription handler: every notification, in arrival order, onto one queue."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[tuple[str, Any, ua.DataValue | None]] = asyncio.Queue()

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.q.put_nowait((node.nodeid.Identifier, val, data.monitored_item.Value))

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self.q.put_nowait(("status", status.Status, None))


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:
    client = Client(url)
    async with asyncio.timeout(GUARD_S):
        await client.connect()
    try:
        yield client
    finally:
        # after a server restart the old session is gone; disconnect only cleans up locally
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[MachineOpcUaServer, Plant, FakeClock]]:
    """Two machines with the same name (the second is served as ``m1_1``) on a real server,
    driven by a plant on a fake clock (time 0 fixed at creation)."""
    machines = [make_machine("m1", 1), make_machine("m1", 2)]
    server = MachineOpcUaServer(machines, port=free_port())
    await server.start()
    clock = FakeClock()
    plant = Plant(machines, clock=clock)
    plant.publishers.append(server)
    plant.elapsed_s()  # pins the plant's time 0
    yield server, plant, clock
    await server.stop()


async def step(plant: Plant, clock: FakeClock, dt: float = TICK_S) -> None:
    clock.advance(dt)
    await plant.step()


async def child(client: Client, uri: str, *path: str) -> Node:
    idx = await client.get_namespace_index(uri)
    return await client.nodes.objects.get_child([f"{idx}:{p}" for p in ("Machines", *path)])


async def test_browse_paths_and_scalars(sim: tuple[MachineOpcUaServer, Plant, FakeClock]) -> None:
    server, plant, clock = sim
    assert server.names == ["m1", "m1_1"]
    await step(plant, clock)
    async with connected(server.endpoint) as client:
        uri = server.namespace_uri
        for i, (m, name) in enumerate(zip(plant.machines, server.names, strict=True)):
            snap = plant.last[i]
            assert snap is not None
            temp = await child(client, uri, name, "Temperature")
            assert temp.nodeid == server.node_id(name, "Temperature")
            assert await temp.read_value() == pytest.approx(m.temperature_c)
            shaft = await child(client, uri, name, "ShaftSpeed")
            assert await shaft.read_value() == m.spec.shaft_hz
            vib0 = snap.blocks[0].samples.astype(np.float64)
            rms = await (await child(client, uri, name, "OverallRms")).read_value()
            assert rms == pytest.approx(math.sqrt(float(np.mean(vib0**2))))
            for (ch, _kind, unit, rate), block in zip(m.channels, snap.blocks, strict=True):
                wf = await child(client, uri, name, ch, "Waveform")
                assert wf.nodeid == server.node_id(name, ch, "Waveform")
                dv = await wf.read_data_value()
                assert dv.StatusCode.is_good()
                assert dv.SourceTimestamp is not None
                np.testing.assert_array_equal(np.asarray(dv.Value.Value, np.float32), block.samples)
                first = await (await child(client, uri, name, ch, "FirstIndex")).read_value()
                assert first == block.first_index == 0
                assert await (await child(client, uri, name, ch, "SampleRate")).read_value() == rate
                assert await (await child(client, uri, name, ch, "Unit")).read_value() == unit


async def test_waveform_subscription_is_contiguous(
    sim: tuple[MachineOpcUaServer, Plant, FakeClock],
) -> None:
    server, plant, clock = sim
    async with connected(server.endpoint) as client:
        wf = await child(client, server.namespace_uri, "m1", "vib0", "Waveform")
        fi = await child(client, server.namespace_uri, "m1", "vib0", "FirstIndex")
        handler = Handler()
        sub = await client.create_subscription(20, handler)
        await sub.subscribe_data_change([fi, wf])
        first_index: int | None = None
        seen: list[tuple[int, int, Any]] = []  # (FirstIndex, len, SourceTimestamp) per block
        async with asyncio.timeout(GUARD_S):
            while first_index is None or not seen:  # the initial values: 0 and []
                key, val, dv = await handler.q.get()
                if key.endswith("FirstIndex"):
                    first_index = val
                else:
                    seen.append((-1, len(val), None))
            seen.clear()
            for _ in range(5):
                await step(plant, clock)
                block = plant.last[0].blocks[0]  # type: ignore[union-attr]
                while True:  # FirstIndex of a block arrives no later than its Waveform
                    key, val, dv = await handler.q.get()
                    assert key != "status"
                    if key.endswith("FirstIndex"):
                        first_index = val
                        continue
                    assert dv is not None
                    assert dv.SourceTimestamp is not None
                    assert len(val) == block.samples.shape[0] == 512
                    assert first_index == block.first_index
                    seen.append((first_index, len(val), dv.SourceTimestamp))
                    break
    for (f0, n0, t0), (f1, _n1, t1) in itertools.pairwise(seen):
        assert f1 == f0 + n0
        assert t1 - t0 == timedelta(seconds=n0 / 5120)
    assert seen[0][2] == server.origin


async def test_restart_drops_sessions_and_serves_again(
    sim: tuple[MachineOpcUaServer, Plant, FakeClock],
) -> None:
    server, plant, clock = sim
    await step(plant, clock)
    async with connected(server.endpoint) as old:
        temp = await child(old, server.namespace_uri, "m1", "Temperature")
        handler = Handler()
        sub = await old.create_subscription(20, handler)
        await sub.subscribe_data_change([temp])
        async with asyncio.timeout(GUARD_S):
            key, _, _ = await handler.q.get()
            assert key == "m1.Temperature"
            await server.restart()
            key, status, _ = await handler.q.get()  # the subscription reports the loss
            assert key == "status"
            assert not status.is_good()
        with pytest.raises((ConnectionError, UaError, TimeoutError)):
            async with asyncio.timeout(GUARD_S):
                await temp.read_value()
    async with connected(server.endpoint) as new:
        # the same address space, still holding the values published before the restart
        block = plant.last[0].blocks[0]  # type: ignore[union-attr]
        wf = await child(new, server.namespace_uri, "m1", "vib0", "Waveform")
        np.testing.assert_array_equal(np.asarray(await wf.read_value(), np.float32), block.samples)
        temp = await child(new, server.namespace_uri, "m1", "Temperature")
        assert await temp.read_value() == pytest.approx(plant.machines[0].temperature_c)
        await step(plant, clock)
        fi = await child(new, server.namespace_uri, "m1", "vib0", "FirstIndex")
        assert await fi.read_value() == block.first_index + block.samples.shape[0]


async def test_port_in_use_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MachineOpcUaServer([make_machine()], port=port)
        with pytest.raises(ResourceUnavailableError, match="address in use"):
            await server.start()  # fails fast, before the slow server init
        assert not server.running
        # the authoritative check: the real bind, should the port be taken after the pre-check
        monkeypatch.setattr(server, "_check_bindable", lambda: None)
        with pytest.raises(ResourceUnavailableError, match=f"127.0.0.1:{port}"):
            await server.start()
        assert not server.running
