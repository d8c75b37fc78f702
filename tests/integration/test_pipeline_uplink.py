"""The whole gateway with ``[uplink.influxdb]``: simulated machine -> Modbus -> DSP -> journal ->
forwarder -> a real server. Changing the sink's settings across a restart keeps the backlog."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import parse_config
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from tests.conftest import Sim, plant_toml
from tests.integration.test_uplink_influx import wait_for
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics

ENV = {"PDM_TEST_TOKEN": "s3cr3t"}


def uplink_toml(url: str, batch_size: int) -> str:
    return f"""
[uplink.influxdb]
url = "{url}"
org = "plant"
bucket = "pdm"
token = "${{PDM_TEST_TOKEN}}"
batch_size = {batch_size}
flush_interval_s = 0.2
backoff = {{ initial_s = 0.05, max_s = 0.2 }}
"""


async def test_pipeline_forwards_and_keeps_the_backlog_across_a_sink_change(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        try:
            text = plant_toml(port, tmp_path, units=1, extra=uplink_toml(vm.url, 20))
            cfg = parse_config(text, base_dir=tmp_path, env=ENV)
            p = Pipeline(cfg)
            await p.start()
            assert p.uplink is not None
            up = p.uplink
            await wait_for(lambda: up.sent_by_kind.get("feature", 0) >= 20, up.changed)
            assert p.status()["uplink"] == {"influxdb": up.status()}
            await p.stop()

            # new settings for the same sink (through a proxy that is cut): the gateway runs,
            # the backlog grows and is kept in the journal
            proxy.mode = "cut"
            text = plant_toml(port, tmp_path, units=1, extra=uplink_toml(proxy.url, 500))
            p = Pipeline(parse_config(text, base_dir=tmp_path, env=ENV))
            await p.start()
            assert p.uplink is not None
            cut = p.uplink
            await wait_for(lambda: cut.state == "down" and cut.backlog >= 10, cut.changed)
            await p.stop()

            # back up: everything stored, from both runs, arrives once
            proxy.mode = "pass"
            p = Pipeline(parse_config(text, base_dir=tmp_path, env=ENV))
            await p.start()
            assert p.uplink is not None
            await asyncio.wait_for(p.uplink.drained(), 30)
            await p.stop()
        finally:
            await proxy.stop()
        j = Journal(cfg.store_path())
        try:
            acked = j.cursor("influxdb", "bulk")
            rows = j.read("check", 10**6)
        finally:
            j.close()
        sent = sorted(
            r.ts_ns // 1_000_000 for r in rows if r.channel == "m1_vib" and r.seq <= acked
        )
        assert len(sent) > 30  # records of all three runs
        rms = await vm.samples("feature_rms")
        series = {dict(k)["channel"]: ts for k, ts in rms.items()}
        # every acknowledged record is on the server, once per key
        assert sorted(series["m1_vib"]) == sent
