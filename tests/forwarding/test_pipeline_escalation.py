"""The whole gateway: simulated machines -> Modbus -> DSP -> alerts -> store -> uplink and
escalation. In summary mode a growing imbalance on m2 raises an alert: m2's full-rate detail
around it reaches the server (the part recorded before the alert too), m1's detail does not;
m2's snapshot goes to the HTTPS endpoint with the alert's id, the verdict shows on OPC UA, and
the byte counters match what the server and the endpoint received."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from asyncua import Client

from gateway.config import parse_config
from gateway.demo import free_port
from gateway.runtime.pipeline import Pipeline
from gateway.status_cli import format_status
from gateway.store.journal import Journal
from tests.conftest import Sim, plant_toml
from tests.forwarding.test_escalation import Endpoint
from tests.integration.test_pipeline_uplink import uplink_toml
from tests.integration.test_slice import healthy_rms
from tests.integration.test_uplink_influx import wait_for
from tests.uplink.certs import self_signed
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics


def config_toml(level: float, endpoint: Endpoint, ca: Path) -> str:
    return f"""
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

[forwarding]
settle_s = 0.2
ring_s = 2.0
[forwarding.default]
mode = "summary"
summary_interval_s = 1.0
pre_trigger_s = 0.5
post_trigger_s = 0.5
snapshot = {{ enabled = true, length_s = 0.5 }}
[forwarding.assets.m2]
escalate = true  # the rest as the default
[forwarding.escalation]
url = "{endpoint.url}"
token = "${{PDM_TEST_TOKEN}}"
ca_file = "{ca.as_posix()}"
backoff = {{ initial_s = 0.05, max_s = 0.2 }}
"""


async def test_alert_detail_snapshot_and_verdict_through_the_whole_gateway(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    endpoint = Endpoint(cert, key)
    await endpoint.start()
    level = 2 * healthy_rms(modbus_sim.machines[0].spec)
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        try:
            extra = uplink_toml(proxy.url, 50) + config_toml(level, endpoint, cert)
            text = plant_toml(port, tmp_path, extra=extra)
            cfg = parse_config(text, base_dir=tmp_path, env={"PDM_TEST_TOKEN": "s3cr3t"})
            p = Pipeline(cfg)
            await p.start()
            up, esc, srv = p.uplink, p.escalator, p.opcua_server
            assert up is not None
            assert esc is not None
            assert srv is not None
            await wait_for(lambda: esc.verdicts >= 1, esc.changed)
            # detail after the alert is decided once its post-trigger time has passed
            await wait_for(lambda: up.sent_by_kind.get("feature", 0) >= 8, up.changed)
            client = Client(srv.url)
            async with asyncio.timeout(60):
                await client.connect()
            try:
                node = client.get_node(srv.node_id("Assets.m2.LastVerdict"))
                verdict = await node.read_value()
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            st = p.status()
            await p.stop()
            rms = await vm.values("feature_rms")
        finally:
            await proxy.stop()
            await endpoint.stop()
    j = Journal(cfg.store_path())
    try:
        alert = next(
            r for r in j.read("check", 10**6, "priority") if r.payload.get("state") == "raised"
        )
        snaps = [r for r in j.read("check", 10**6) if r.kind == "snapshot"]
    finally:
        j.close()
    assert alert.asset == "m2"
    # the snapshot of m2's alert, with its context, went to the endpoint once
    m2_snap = next(s for s in snaps if s.asset == "m2")
    assert m2_snap.payload["alert_id"] == alert.payload["alert_id"]
    assert m2_snap.payload["trigger"] == "alert"
    sid = f"m2-alert-{alert.ts_ns}"
    assert [k for k, _, _ in endpoint.received].count(sid) == 1
    body = endpoint.accepted[sid]
    assert body["alert_id"] == alert.payload["alert_id"]
    assert "m2_vib" in body["channels"]  # type: ignore[operator]
    assert all(b["asset"] == "m2" for _, b, _ in endpoint.received)
    assert verdict == f"outer race fault ({sid})"
    # m2's detail around the alert arrived, including windows recorded before it
    m2 = [ts for lab, ts, _ in rms if lab["asset"] == "m2"]
    assert m2
    alert_ms = alert.ts_ns / 1e6
    assert any(ts < alert_ms for ts in m2)  # pre-trigger detail
    assert all(alert_ms - 500 <= ts <= alert_ms + 500 for ts in m2)
    assert not [ts for lab, ts, _ in rms if lab["asset"] == "m1"]  # no alert: no detail
    # the counters are what the server and the endpoint received
    fwd = st["forwarding"]
    assert isinstance(fwd, dict)
    sent = sum(len(line) + 1 for line in proxy.lines())
    assert sum(up.sent_bytes.values()) == sent  # (the final count, after the stop)
    assert fwd["total"]["forwarded_bytes"] <= sent  # (the status was taken before)
    escalated = sum(
        len(json.dumps(b, separators=(",", ":")).encode()) for b in endpoint.accepted.values()
    )
    assert fwd["assets"]["m2"]["escalated_bytes"] == escalated
    assert fwd["assets"]["m1"]["escalated_bytes"] == 0
    text = format_status(st)
    e = st["escalation"]
    assert isinstance(e, dict)
    assert e["sent"] == e["verdicts"] >= 1
    assert f"escalation: up, {e['sent']} snapshot(s) sent, {e['verdicts']} verdict(s)" in text
    assert f" / {escalated} [summary]" in text
