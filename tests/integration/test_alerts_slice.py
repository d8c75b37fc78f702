"""Simulated machines -> Modbus -> DSP -> alert stage -> journal, with the OPC UA server on:
a growing imbalance raises the rule's alert, SCADA sees the tags and the journal keeps it all."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from asyncua import Client
from asyncua.ua.uaerrors import UaError

from gateway.config import parse_config
from gateway.demo import free_port
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from tests.conftest import Sim, plant_toml, wait_until
from tests.integration.test_slice import Frames, healthy_rms


async def test_alert_raised_in_pipeline_shown_on_opcua_and_journalled(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    level = 2 * healthy_rms(modbus_sim.machines[0].spec)
    extra = f"""
[alerts.rules.m2_rms]
asset = "m2"
source = "feature"
channel = "m2_vib"
feature = "rms"
raise_level = {level}
clear_level = {level / 2}
on_n = 2
on_m = 3

[opcua_server]
enabled = true
port = {free_port()}
security_modes = ["None"]
allow_anonymous = true
"""
    cfg = parse_config(plant_toml(port, tmp_path, extra=extra), base_dir=tmp_path)
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    await pipeline.start()
    try:
        await wait_until(lambda: pipeline.alerts.events >= 1, frames.event)
        assert pipeline.opcua_server is not None
        client = Client(pipeline.opcua_server.url)
        async with asyncio.timeout(60):
            await client.connect()
        try:
            srv = pipeline.opcua_server
            rms = await client.get_node(srv.node_id("Assets.m2.Features.m2_vib.rms")).read_value()
            assert rms > level / 2
            health = client.get_node(srv.node_id("Assets.m2.HealthState"))
            assert await health.read_value() == 3  # Warning
            assert await client.get_node(srv.node_id("Assets.m1.HealthState")).read_value() == 1
        finally:
            with contextlib.suppress(ConnectionError, UaError, TimeoutError):
                await client.disconnect()
    finally:
        assert await pipeline.stop()
    j = Journal(cfg.store_path())
    try:
        alerts = [r for r in j.read("check", 100_000, "priority") if r.kind == "alert"]
        assert alerts[0].payload["state"] == "raised"
        assert alerts[0].payload["rule"] == "m2_rms"
        assert alerts[0].asset == "m2"
        assert j.count("feature") == len(frames.frames)
    finally:
        j.close()
