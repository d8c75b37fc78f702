"""Summary forwarding against a real server (VictoriaMetrics), on a fake clock: summaries plus
full-rate detail only around an alert (the pre-trigger part too, though it was stored before the
alert was raised); snapshots never leave; the byte counters match what the server took."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.core.clock import FakeClock
from gateway.core.records import AlertEvent, AlertState, FeatureFrame, SampleBlock, Severity
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.hub import ForwardingHub
from gateway.runtime.queues import BoundedQueue
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord
from gateway.store.config import StoreConfig
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter
from gateway.uplink.forwarder import InfluxForwarder
from tests.integration.test_uplink_influx import uplink_cfg
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics

T0 = 1_700_000_000_000_000_000
STEP_NS = 100_000_000  # a window every 100 ms


def frame(i: int, asset: str = "m1") -> FeatureFrame:
    return FeatureFrame(
        asset=asset,
        channel=f"{asset}_vib",
        start_ts_ns=T0 + i * STEP_NS,
        end_ts_ns=T0 + i * STEP_NS + 200_000_000,
        gateway_ts_ns=T0 + i * STEP_NS + 250_000_000,
        schema_version="v1",
        names=("i", "rms"),
        units=("", "g"),
        values=np.array([float(i), 1.0 + (i % 10) / 10]),
    )


def raised(i: int) -> AlertEvent:
    return AlertEvent(
        alert_id=f"a{i}",
        asset="m1",
        rule="vib_high",
        state=AlertState.RAISED,
        severity=Severity.ALARM,
        ts_ns=T0 + i * STEP_NS,
        message="vibration high",
    )


@pytest.fixture
async def vm(tmp_path: Path) -> AsyncIterator[VictoriaMetrics]:
    async with victoria_metrics(tmp_path / "vm") as server:
        yield server


FORWARDING = {
    "default": {"mode": "full"},
    "assets": {
        "m1": {
            "mode": "summary",
            "summary_interval_s": 10.0,
            "pre_trigger_s": 3.0,
            "post_trigger_s": 2.0,
            "snapshot": {"enabled": True, "length_s": 1.0},
        }
    },
    "settle_s": 1.0,
}


async def test_summaries_and_detail_around_an_alert_with_its_pre_trigger_part(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    proxy = FaultProxy(vm.url)
    await proxy.start()
    clock = FakeClock(T0)
    cfg = ForwardingConfig.model_validate(FORWARDING)
    hub = ForwardingHub(cfg, {"m1": ["m1_vib"], "m2": ["m2_vib"]}, {"m1_vib", "m2_vib"})
    journal = Journal(tmp_path / "journal.sqlite", sinks=["influxdb"])
    access = JournalAccess(journal)
    queue: BoundedQueue[StoreRecord] = BoundedQueue("records", 100_000)
    writer = StoreWriter(StoreConfig(flush_interval_s=0.05), access, queue, clock)
    writer.deriver = hub
    fwd = InfluxForwarder(uplink_cfg(proxy.url), access, clock, rand=lambda: 0.5)
    fwd.selector = hub.selector
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(fwd.run())]
    try:
        # 30 s of windows for m1 (summary mode) and m2 (full mode), time moving with them
        for i in range(300):
            await queue.put(frame(i))
            await queue.put(frame(i, "m2"))
            if i % 10 == 0:  # raw samples of m1's waveform channel (for its snapshot)
                samples = np.full(512, 0.25 + i, dtype=np.float32)
                hub.tap(SampleBlock("m1_vib", T0 + i * STEP_NS, 0, 512.0, samples, i * 512))
            if i == 200:  # raised at 20 s: detail 17 s .. 22 s is wanted, stored long before
                await queue.put(raised(i))
            if i % 10 == 9:
                while writer.written < 2 * (i + 1):
                    writer.flushed.clear()
                    await writer.flushed.wait()
                clock.advance(1.0)
        await queue.close()
        await tasks[0]  # the writer flushed the open summaries at close
        clock.auto_advance = True  # let the forwarder's decisions come due
        await asyncio.wait_for(fwd.drained(), 30)

        got = await vm.values("feature_i")
        m1 = sorted(int(v) for lab, _, v in got if lab["asset"] == "m1")
        m2 = sorted(int(v) for lab, _, v in got if lab["asset"] == "m2")
        assert m2 == list(range(300))  # full mode: every window
        assert m1 == list(range(170, 221))  # detail from 3 s before to 2 s after the alert
        # m1's three 10 s intervals, aligned to multiples of the interval (T0 is one)
        starts_ms = [(T0 + k * 10**10) // 10**6 for k in range(3)]
        for stat, want in (("max", 1.9), ("min", 1.0), ("last", 1.9)):
            got_s = await vm.values(f"summary_rms_{stat}")
            assert {lab["asset"] for lab, _, _ in got_s} == {"m1"}
            assert sorted(ts for _, ts, _ in got_s) == starts_ms
            assert all(v == pytest.approx(want) for _, _, v in got_s)
        means = sorted((ts, v) for _, ts, v in await vm.values("summary_i_mean"))
        assert [v for _, v in means] == [49.5, 149.5, 249.5]
        assert len(await vm.values("alert_state_code")) == 1
        # m1's unselected detail and its snapshot were acknowledged without being sent
        assert fwd.skipped == 300 - 51 + 1
        assert fwd.skipped_by_asset == {"m1": 300 - 51 + 1}

        # the forwarded byte count is what the server accepted, per asset
        lines = proxy.lines()
        per_asset: dict[str, int] = {}
        for line in lines:
            tags = line.split(" ")[0].split(",")
            asset = next(t.split("=")[1] for t in tags if t.startswith("asset="))
            per_asset[asset] = per_asset.get(asset, 0) + len(line) + 1
        assert fwd.sent_bytes == per_asset
        # the alert's snapshot is in the store, and raw data never left (escalation is off)
        assert await access.call(journal.count, "snapshot") == 1
        assert not any(line.startswith("snapshot") for line in lines)
        assert not any("200.25" in line for line in lines)  # no raw sample value
        assert fwd.unencodable == 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        access.close()
        await proxy.stop()
