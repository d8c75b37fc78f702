"""The healthy simulated machine, three minutes of it on a fake clock, through the tap, the DSP,
the store and the uplink to a real server in summary mode (60 s intervals): the gateway's own
counters say at least 100x fewer bytes left than were collected, and they match what the server
received."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import parse_config
from gateway.core.clock import FakeClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.dsp.stage import DspProcessor
from gateway.forwarding.hub import ForwardingHub
from gateway.runtime.queues import BoundedQueue
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord, frame_row
from gateway.store.config import StoreConfig
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter
from gateway.uplink.forwarder import InfluxForwarder
from gateway.uplink.lineproto import to_line
from simulators.machine import Machine
from tests.conftest import plant_toml, small_spec
from tests.integration.test_uplink_influx import uplink_cfg
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics

SECONDS = 180
STEP_S = 0.1
FORWARDING = """
[forwarding.default]
mode = "summary"
summary_interval_s = 60.0
"""


async def test_summaries_send_a_hundredth_of_the_collected_bytes(tmp_path: Path) -> None:
    cfg = parse_config(plant_toml(1, tmp_path, units=1, extra=FORWARDING), base_dir=tmp_path)
    clock = FakeClock()
    hub = ForwardingHub(
        cfg.forwarding,
        {a: list(x.channels) for a, x in cfg.assets.items()},
        {c for c, ch in cfg.channels.items() if ch.is_waveform},
    )
    dsp = DspProcessor(cfg.dsp, dict(cfg.channels), dict(cfg.assets), clock.now_ns)
    machine = Machine(small_spec("m1"), seed=1)
    vib_name = machine.channels[0][0]
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        journal = Journal(tmp_path / "journal.sqlite", sinks=["influxdb"])
        access = JournalAccess(journal)
        queue: BoundedQueue[StoreRecord] = BoundedQueue("records", 100_000)
        writer = StoreWriter(StoreConfig(flush_interval_s=0.05), access, queue, clock)
        writer.deriver = hub
        fwd = InfluxForwarder(uplink_cfg(proxy.url), access, clock, rand=lambda: 0.5)
        fwd.selector = hub.selector
        tasks = [asyncio.create_task(writer.run()), asyncio.create_task(fwd.run())]
        full_rate_bytes = 0  # what full mode would have sent: the baseline
        try:
            for k in range(1, int(SECONDS / STEP_S) + 1):
                snap = machine.advance(k * STEP_S)
                items: list[SampleBlock | Reading] = []
                for b in snap.blocks:
                    if b.channel == vib_name and len(b.samples):
                        ts = clock.now_ns() + round(b.first_index / b.sample_rate_hz * 1e9)
                        items.append(
                            SampleBlock(
                                "m1_vib", ts, ts, b.sample_rate_hz, b.samples, b.first_index
                            )
                        )
                now = clock.now_ns() + round(k * STEP_S * 1e9)
                items.append(Reading("m1_temp", now, now, snap.temperature_c, Quality.GOOD))
                for it in items:
                    hub.tap(it)
                for f in dsp.process(items):
                    full_rate_bytes += len(to_line(frame_row(f))) + 1
                    await queue.put(f)
            await queue.close()
            await tasks[0]
            clock.auto_advance = True
            await asyncio.wait_for(fwd.drained(), 30)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            access.close()
            await proxy.stop()
        rms = await vm.values("summary_rms_mean")
    st = hub.status(fwd.sent_bytes, {}, fwd.skipped_by_asset)["assets"]
    assert isinstance(st, dict)
    collected, forwarded = st["m1"]["collected_bytes"], st["m1"]["forwarded_bytes"]
    sent = sum(len(line) + 1 for line in proxy.lines())
    assert forwarded == sent  # the counter is what the server received
    assert collected >= SECONDS * 5120 * 4  # every raw vibration sample, 4 bytes each
    assert {lab["channel"] for lab, _, _ in rms} == {"m1_vib"}
    assert len(rms) == SECONDS // 60 + 1  # whole intervals (and the one the run ended in)
    assert all(line.startswith("summary,") for line in proxy.lines())
    print(
        f"\nhealthy m1, {SECONDS} s: collected {collected} B, full rate would send "
        f"{full_rate_bytes} B ({collected / full_rate_bytes:.1f}x fewer), summaries sent "
        f"{forwarded} B ({collected / forwarded:.0f}x fewer)"
    )
    assert collected >= 100 * forwarded
