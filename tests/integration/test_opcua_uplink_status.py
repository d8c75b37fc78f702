"""The uplink's state on the gateway's OPC UA server: a real asyncua client subscribed to
``Objects/Gateway/Uplinks/<sink>/`` while the link to a real time-series server (through the fault
proxy) is cut and then restored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncua import Client
from asyncua.ua.uaerrors import UaError

from gateway.config import parse_config
from gateway.core.clock import FakeClock
from gateway.demo import free_port
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.opcua_server.server import GatewayOpcUaServer
from gateway.runtime.pipeline import Pipeline
from tests.conftest import Sim, plant_toml
from tests.integration.test_pipeline_uplink import ENV, uplink_toml
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics


class Latest:
    """Subscription handler: the latest value of each node, and every value seen in order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.history: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        name = str(node.nodeid.Identifier).rsplit(".", 1)[-1]
        self.values[name] = val
        self.history.append((name, val))
        self.changed.set()


async def until(predicate: Callable[[], bool], event: asyncio.Event) -> None:
    async with asyncio.timeout(60):  # hang guard
        while not predicate():
            event.clear()
            await event.wait()


async def test_client_sees_the_uplink_go_down_and_drain(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        proxy.mode = "cut"
        await proxy.start()
        extra = uplink_toml(proxy.url, 50) + (
            f"\n[opcua_server]\nenabled = true\nport = {free_port()}\n"
            'security_modes = ["None"]\nallow_anonymous = true\n'
        )
        text = plant_toml(port, tmp_path, units=1, extra=extra)
        cfg = parse_config(text, base_dir=tmp_path, env=ENV)
        p = Pipeline(cfg)
        await p.start()
        try:
            assert p.opcua_server is not None
            client = Client(p.opcua_server.url)
            async with asyncio.timeout(60):
                await client.connect()
            try:
                ns = p.opcua_server.ns
                sink = await client.nodes.objects.get_child(
                    [f"{ns}:Gateway", f"{ns}:Uplinks", f"{ns}:influxdb"]
                )
                nodes = [await sink.get_child(f"{ns}:{n}") for n in ("State", "Backlog")]
                oldest = await sink.get_child(f"{ns}:OldestAgeS")
                health = await client.nodes.objects.get_child([f"{ns}:Gateway", f"{ns}:Health"])
                seen = Latest()
                sub = await client.create_subscription(50, seen)
                await sub.subscribe_data_change(nodes)

                # cut: down, and the backlog grows while the client watches
                await until(lambda: seen.values.get("State") == "down", seen.changed)
                await until(lambda: seen.values.get("Backlog", 0) >= 1, seen.changed)
                first = seen.values["Backlog"]
                await until(lambda: seen.values["Backlog"] > first, seen.changed)
                assert await oldest.read_value() > 0.0
                assert await health.read_value() in ("ok", "degraded", "failing")

                # restored: up, and the backlog drains to nothing
                proxy.mode = "pass"
                mark = len(seen.history)
                await until(lambda: seen.values["State"] == "up", seen.changed)
                await until(
                    lambda: ("Backlog", 0) in seen.history[mark:] and seen.values["State"] == "up",
                    seen.changed,
                )
                assert p.uplink is not None
                assert p.uplink.sent > first
                assert ("State", "down") not in seen.history[mark:]
            finally:
                with contextlib.suppress(ConnectionError, UaError, TimeoutError):
                    await client.disconnect()
        finally:
            await p.stop()
            await proxy.stop()


async def test_status_tags_follow_the_snapshot_and_survive_a_malformed_one(
    tmp_path: Path, caplog: Any
) -> None:
    snap: dict[str, Any] = {"health": {"state": "ok"}, "uplink": {}}
    cfg = OpcUaServerConfig(
        enabled=True, port=free_port(), security_modes=["None"], allow_anonymous=True
    )
    server = GatewayOpcUaServer(
        cfg,
        [],
        FakeClock(),
        tmp_path,
        status=lambda: snap,
        uplinks=["plant_db"],
        models=["pump-model"],
    )
    async with asyncio.timeout(60):
        await server.start()
    client = Client(server.url)
    try:
        async with asyncio.timeout(60):
            await client.connect()

        async def read(path: str) -> Any:
            return await client.get_node(server.node_id(path)).read_value()

        base = "Gateway.Uplinks.plant_db."
        await server.publish_status()  # no forwarder yet: the sink's tags keep their defaults
        assert await read("Gateway.Health") == "ok"
        assert await read(base + "State") == "unknown"
        assert await read(base + "Backlog") == 0

        snap["health"] = {"state": "degraded"}
        snap["uplink"] = {"plant_db": {"state": "down", "backlog": 42, "oldest_age_s": 3.5}}
        await server.publish_status()
        assert await read("Gateway.Health") == "degraded"
        assert await read(base + "State") == "down"
        assert await read(base + "Backlog") == 42
        assert await read(base + "OldestAgeS") == 3.5
        writes = server.tag_writes
        await server.publish_status()
        assert server.tag_writes == writes  # nothing changed: nothing written

        # a malformed snapshot is reported once and leaves the last values in place
        snap["uplink"] = {"plant_db": {"state": "down", "backlog": "many", "oldest_age_s": 4.0}}
        with caplog.at_level(logging.WARNING, logger="gateway.opcua_server.server"):
            await server.publish_status()
            await server.publish_status()
        assert [r.message for r in caplog.records].count(
            "gateway status for OPC UA unreadable: could not convert string to float: 'many'"
        ) == 1
        assert await read(base + "Backlog") == 42

        snap["uplink"] = {"plant_db": {"state": "up", "backlog": 0, "oldest_age_s": 0.0}}
        await server.publish_status()
        assert await read(base + "State") == "up"
        assert await read(base + "Backlog") == 0

        # the model lifecycle: active and shadow version and the shadow run's summary
        versions = {
            "1.0": {"active": {"frames": 900, "alert_rate": 0.01, "p99": 2.1}},
            "2.0": {"shadow": {"frames": 900, "alert_rate": 0.2, "p99": 7.5}},
        }
        snap["model_lifecycle"] = {
            "models": {"pump-model": {"active": "1.0", "shadow": "2.0", "versions": versions}}
        }
        await server.publish_status()
        assert await read("Gateway.Models.pump-model.ActiveVersion") == "1.0"
        assert await read("Gateway.Models.pump-model.ShadowVersion") == "2.0"
        assert json.loads(await read("Gateway.Models.pump-model.Summary")) == versions
    finally:
        with contextlib.suppress(ConnectionError, UaError, TimeoutError):
            await client.disconnect()
        await server.stop()
