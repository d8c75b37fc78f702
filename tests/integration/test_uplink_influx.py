"""Store and forward against a real server speaking the InfluxDB v2 write API (VictoriaMetrics
with deduplication), directly and through a fault proxy: everything accepted arrives once per
key; outages, delays, throttling and a poisoned record are survived, alerts go first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.core.clock import FakeClock
from gateway.runtime.queues import BoundedQueue
from gateway.store.access import JournalAccess
from gateway.store.codec import StoreRecord
from gateway.store.config import StoreConfig
from gateway.store.journal import Journal
from gateway.store.writer import StoreWriter
from gateway.uplink.config import InfluxUplinkConfig
from gateway.uplink.forwarder import InfluxForwarder
from tests.uplink.certs import self_signed
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.records import CHANNELS, STEP_NS, T0, alert, frame, mixed
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics


@pytest.fixture
async def vm(tmp_path: Path) -> AsyncIterator[VictoriaMetrics]:
    async with victoria_metrics(tmp_path / "vm") as server:
        yield server


@pytest.fixture
async def proxy(vm: VictoriaMetrics) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(vm.url)
    await p.start()
    yield p
    await p.stop()


def uplink_cfg(url: str, name: str = "influxdb", **kw: object) -> InfluxUplinkConfig:
    base: dict[str, object] = {
        "name": name,
        "url": url,
        "org": "plant",
        "bucket": "pdm",
        "token": SecretStr("t0ken"),
        "batch_size": 200,
        "flush_interval_s": 0.5,
        "timeout_s": 5.0,
        "backoff": {"initial_s": 0.1, "max_s": 1.0},
    }
    return InfluxUplinkConfig.model_validate({**base, **kw})


@dataclass
class Gateway:
    """The store writer and a forwarder on one journal, on a fake clock that moves by itself."""

    queue: BoundedQueue[StoreRecord]
    writer: StoreWriter
    forwarder: InfluxForwarder
    access: JournalAccess
    clock: FakeClock
    tasks: list[asyncio.Task[None]]

    @property
    def journal(self) -> Journal:
        return self.access.journal

    async def put(self, records: list[StoreRecord]) -> None:
        for r in records:
            await self.queue.put(r)

    async def committed(self, n: int) -> None:
        """Wait until ``n`` records are in the journal."""
        while self.writer.written < n:
            self.writer.flushed.clear()
            await self.writer.flushed.wait()

    async def stop(self) -> None:
        await self.queue.close()
        await self.tasks[0]
        self.tasks[1].cancel()
        await asyncio.gather(self.tasks[1], return_exceptions=True)
        self.writer.close()


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[[InfluxUplinkConfig], Gateway]]:
    made: list[Gateway] = []

    def make(cfg: InfluxUplinkConfig) -> Gateway:
        clock = FakeClock(auto_advance=True)
        journal = Journal(tmp_path / "journal.sqlite", sinks=[cfg.name])
        access = JournalAccess(journal)
        queue: BoundedQueue[StoreRecord] = BoundedQueue("records", 100_000)
        writer = StoreWriter(StoreConfig(flush_interval_s=0.05), access, queue, clock)
        fwd = InfluxForwarder(cfg, access, clock, rand=lambda: 0.5)
        tasks = [asyncio.create_task(writer.run()), asyncio.create_task(fwd.run())]
        gw = Gateway(queue, writer, fwd, access, clock, tasks)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        if not gw.tasks[0].done():
            await gw.stop()


async def wait_for(predicate: Callable[[], bool], event: asyncio.Event) -> None:
    async with asyncio.timeout(30):  # hang guard
        while not predicate():
            event.clear()
            await event.wait()


async def check_arrived_once(vm: VictoriaMetrics, indices: set[int]) -> None:
    """Every feature frame in ``indices`` is on the server exactly once, with its value."""
    got = await vm.values("feature_i")
    assert len(got) == len(indices)  # one sample per record: nothing twice, nothing missing
    assert {int(v) for _, _, v in got} == indices
    for labels, ts_ms, v in got:
        i = int(v)
        assert ts_ms == (T0 + i * STEP_NS) // 1_000_000
        assert labels["channel"] == CHANNELS[i % len(CHANNELS)]
    per_series = await vm.samples("feature_i")
    for ts in per_series.values():
        assert len(ts) == len(set(ts))


async def test_every_record_arrives_once_per_key_and_a_replay_overwrites(
    vm: VictoriaMetrics, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    records = mixed(1000)
    gw = make_gateway(uplink_cfg(vm.url))
    await gw.put(records)
    await gw.committed(len(records))
    await asyncio.wait_for(gw.forwarder.drained(), 30)
    await check_arrived_once(vm, set(range(1000)))
    scores = await vm.values("score_score")
    assert sorted(int(v) for _, _, v in scores) == list(range(0, 1000, 10))
    assert {lab["model_version"] for lab, _, _ in scores} == {"1.2.0"}
    alerts = await vm.values("alert_state_code")
    sensor = await vm.values("sensor_state_code")
    assert sorted(lab["alert_id"] for lab, _, _ in alerts) == sorted(
        f"a{i}" for i in range(0, 1000, 100)
    )
    assert len(sensor) == 10
    assert {lab["channel"] for lab, _, _ in sensor} == {"m2_vib"}
    st = gw.forwarder.status()
    assert st["sent"] == len(records)
    assert st["state"] == "up"
    assert st["rejected"] == 0
    await gw.stop()

    # a second sink (new name: its cursor starts at the beginning) re-sends everything:
    # the server overwrites the same points instead of adding any
    gw2 = make_gateway(uplink_cfg(vm.url, name="replay"))
    await asyncio.wait_for(gw2.forwarder.drained(), 30)
    assert gw2.forwarder.sent == len(records)
    await check_arrived_once(vm, set(range(1000)))
    assert len(await vm.values("score_score")) == 100


async def test_outage_backlog_grows_then_drains_alerts_first(
    vm: VictoriaMetrics,
    proxy: FaultProxy,
    make_gateway: Callable[[InfluxUplinkConfig], Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplink")
    gw = make_gateway(uplink_cfg(proxy.url))
    fwd = gw.forwarder
    proxy.mode = "cut"
    await gw.put([frame(i) for i in range(1000)])
    await gw.committed(1000)
    await wait_for(lambda: fwd.retries >= 3, proxy.changed)
    # alerts raised during the outage
    await gw.put([alert(i) for i in range(1000, 1020)])
    await gw.put([frame(i) for i in range(1020, 2000)])
    await gw.committed(2000)
    await wait_for(lambda: fwd.backlog == 2000, proxy.changed)
    assert fwd.state == "down"
    assert proxy.accepted == []
    n_down = sum("uplink influxdb down" in r.getMessage() for r in caplog.records)
    assert n_down == 1  # once per state change, not per failed attempt

    proxy.mode = "pass"
    await asyncio.wait_for(fwd.drained(), 30)
    first = proxy.accepted[0]
    assert len(first) == 20
    assert all(line.startswith("alert,") for line in first)  # the priority lane went first
    await check_arrived_once(vm, set(range(1000)) | set(range(1020, 2000)))
    assert len(await vm.values("alert_state_code")) == 20
    await wait_for(lambda: fwd.state == "up" and fwd.backlog == 0, fwd.changed)
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("uplink influxdb down" in m for m in msgs) == 1
    assert any("(was down)" in m for m in msgs)
    assert proxy.encodings == {"gzip"}


async def test_throttling_honours_retry_after_and_delays_are_retried(
    vm: VictoriaMetrics, proxy: FaultProxy, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    gw = make_gateway(uplink_cfg(proxy.url, timeout_s=0.3))
    fwd = gw.forwarder
    proxy.mode, proxy.retry_after = "throttle", "7"
    await gw.put([frame(i) for i in range(300)])
    await gw.committed(300)
    await wait_for(lambda: fwd.throttled >= 2, fwd.changed)
    assert gw.clock.sleeps.count(7.0) >= 2  # waited what the server asked, not its own backoff

    # slower than the client's timeout: the uplink gives up on the request and sends it again
    # (the server may have stored the first copy: the re-sent points overwrite it)
    proxy.mode, proxy.delay_s = "pass", 0.6
    await wait_for(lambda: fwd.retries >= fwd.throttled + 1, fwd.changed)
    proxy.delay_s = 0.0
    await asyncio.wait_for(fwd.drained(), 30)
    await check_arrived_once(vm, set(range(300)))


async def test_a_poisoned_record_is_dead_lettered_alone_and_never_blocks(
    vm: VictoriaMetrics, proxy: FaultProxy, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    gw = make_gateway(uplink_cfg(proxy.url, batch_size=128))
    fwd = gw.forwarder
    records: list[StoreRecord] = [frame(i) for i in range(500)]
    records[137] = frame(137, asset="poison")
    await gw.put(records)
    await gw.committed(500)
    await asyncio.wait_for(fwd.drained(), 30)
    assert fwd.rejected == 1
    dead = await gw.access.call(gw.journal.dead_letters, "influxdb")
    assert [(r.asset, r.payload["features"]) for r, _ in dead] == [
        ("poison", {k: v for k, v in zip(records[137].names, records[137].values, strict=True)})  # type: ignore[union-attr]
    ]
    assert "400" in dead[0][1]
    await check_arrived_once(vm, set(range(500)) - {137})
    # the bisection cost a few extra requests, not one per record
    assert proxy.rejected <= 2 * 8


async def test_tls_with_the_servers_certificate_and_refused_without_it(
    tmp_path: Path, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    cert, key = self_signed(tmp_path)
    async with victoria_metrics(tmp_path / "vm-tls", tls=(cert, key)) as vm:
        assert vm.url.startswith("https://")
        # not trusted (the system store does not know this certificate): kept, state down
        gw = make_gateway(uplink_cfg(vm.url, name="untrusted"))
        await gw.put([frame(i) for i in range(50)])
        await wait_for(lambda: gw.forwarder.retries >= 2, gw.forwarder.changed)
        assert gw.forwarder.state == "down"
        assert "certificate" in gw.forwarder.last_error.lower()
        await gw.stop()
        # trusted through ca_file: everything arrives, encrypted
        gw2 = make_gateway(uplink_cfg(vm.url, name="trusted", ca_file=str(cert)))
        await asyncio.wait_for(gw2.forwarder.drained(), 30)
        await check_arrived_once(vm, set(range(50)))


async def test_catch_up_is_paced_to_the_configured_rate(
    vm: VictoriaMetrics, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    gw = make_gateway(uplink_cfg(vm.url, batch_size=100, max_points_per_s=500.0))
    t0 = gw.clock.monotonic()
    await gw.put([frame(i) for i in range(2000)])
    await gw.committed(2000)
    await asyncio.wait_for(gw.forwarder.drained(), 30)
    # 2000 points at 500/s with a burst of one batch: at least (2000 - 100) / 500 s of clock time
    assert gw.clock.monotonic() - t0 >= (2000 - 100) / 500 - 1e-6
    await check_arrived_once(vm, set(range(2000)))


async def test_more_alerts_than_a_batch_and_a_steady_mix_all_go(
    vm: VictoriaMetrics, make_gateway: Callable[[InfluxUplinkConfig], Gateway]
) -> None:
    """Lanes alternate when both have records; a lane with more than one batch is not left
    waiting, and alerts arriving all the time do not hold features back."""
    gw = make_gateway(uplink_cfg(vm.url, batch_size=200))
    await gw.put([alert(i) for i in range(600)])
    await gw.committed(600)
    await asyncio.wait_for(gw.forwarder.drained(), 30)
    assert len(await vm.values("alert_state_code")) == 600
    mix: list[StoreRecord] = []
    for i in range(1000, 3000):
        mix.append(frame(i))
        if i % 4 == 0:
            mix.append(alert(i))
    await gw.put(mix)
    await gw.committed(600 + len(mix))
    await asyncio.wait_for(gw.forwarder.drained(), 30)
    assert len(await vm.values("alert_state_code")) == 600 + 500
    await check_arrived_once(vm, set(range(1000, 3000)))
