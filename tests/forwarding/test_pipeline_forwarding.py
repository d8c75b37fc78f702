"""The whole gateway in summary mode on the healthy simulated machine: the byte counters in
``status()``, ``/metrics`` and ``pdm-gateway status`` agree with what the server received, and
far fewer bytes leave than were collected."""

from __future__ import annotations

from pathlib import Path

from gateway.config import parse_config
from gateway.runtime.metrics import render
from gateway.runtime.pipeline import Pipeline
from gateway.status_cli import format_status
from tests.conftest import Sim, plant_toml
from tests.integration.test_pipeline_uplink import ENV, uplink_toml
from tests.integration.test_uplink_influx import wait_for
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics

FORWARDING = """
[forwarding]
settle_s = 0.1
[forwarding.default]
mode = "summary"
summary_interval_s = 1.0
pre_trigger_s = 0.2
post_trigger_s = 0.2
"""


async def test_summary_mode_forwards_a_fraction_of_what_it_collects(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        try:
            extra = uplink_toml(proxy.url, 50) + FORWARDING
            text = plant_toml(port, tmp_path, units=1, extra=extra)
            cfg = parse_config(text, base_dir=tmp_path, env=ENV)
            p = Pipeline(cfg)
            await p.start()
            up = p.uplink
            assert up is not None
            await wait_for(lambda: up.sent_by_kind.get("summary", 0) >= 6, up.changed)
            await wait_for(lambda: up.skipped_by_asset.get("m1", 0) >= 20, up.changed)
            st = p.status()
            await p.stop()
        finally:
            await proxy.stop()
    fwd = st["forwarding"]
    assert isinstance(fwd, dict)
    m1 = fwd["assets"]["m1"]
    sent = sum(len(line) + 1 for line in proxy.lines())
    assert m1["forwarded_bytes"] == sent == fwd["total"]["forwarded_bytes"]
    assert not any(line.startswith("feature") for line in proxy.lines())  # no alert: no detail
    assert m1["collected_bytes"] >= 5120 * 4  # at least a second of raw vibration samples
    print(f"collected {m1['collected_bytes']} B, forwarded {sent} B")
    text = render(lambda: st).decode()
    assert f'pdm_bytes_collected_total{{asset="m1"}} {float(m1["collected_bytes"])}' in text
    assert f'pdm_bytes_forwarded_total{{asset="m1"}} {float(sent)}' in text
    assert 'pdm_bytes_escalated_total{asset="m1"} 0.0' in text
    lines = format_status(st)
    assert f"m1               {m1['collected_bytes']} / {sent} / 0 [summary]" in lines
