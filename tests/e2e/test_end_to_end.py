"""End to end: 16 simulated machines (6 healthy, 10 developing a fault: every fault type, in
accelerated machine time) -> Modbus (5) and OPC UA (11) -> DSP -> the shipped
LiteRT models -> alerts -> the OPC UA server and the journal -> the InfluxDB forwarder -> a real
VictoriaMetrics, with an uplink cut, a Modbus device outage and an OPC UA server restart during
the run. The plant (``tests.e2e.plant``) is simulated and served by its own process
(``tests.e2e.plantproc``), so it does not share the gateway's event loop. (A gateway ``kill -9``
and the store's byte budget: ``test_gateway_crash``.)

Asserted: every faulty machine alerts before its simulated failure (lead time reported in machine
days), healthy machines stay within the false-alarm budget (reported per machine-day), health
reports each episode and recovers by itself, the OPC UA waveform path loses no sample in normal
operation and flows again after the server restart, and every record the gateway journaled
arrives upstream once per key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from asyncua import Client

from gateway.collectors.opcua.collector import OpcUaCollector
from gateway.config.schema import GatewayConfig, cross_check
from gateway.demo import free_port
from gateway.demo.plant import DemoMachine, demo_config, models_dir
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from gateway.uplink.config import InfluxUplinkConfig, UplinkConfig
from simulators.machine import Machine
from simulators.scenario import DAY_S
from tests.e2e.plant import FAIL_AFTER_S, NS, PLANT, machines
from tests.e2e.plantproc import PlantProcess
from tests.uplink.faultproxy import FaultProxy
from tests.uplink.victoria import victoria_metrics

#: false alarms allowed per healthy machine-day (the shipped models are calibrated to far less)
FA_BUDGET_PER_MACHINE_DAY = 0.05

OPCUA_DEVICE = "opcsim"


def with_opcua(cfg: GatewayConfig, assets: list[str], endpoint: str) -> GatewayConfig:
    """``cfg`` with the Modbus devices of ``assets`` replaced by one OPC UA device reading them
    from the simulator at ``endpoint``: each waveform subscribed with every change queued (12.8
    kHz in blocks of one plant tick), the temperature by browse path. The remaining Modbus
    devices retry quickly after an outage (as the OPC UA device does), so the test's outage does
    not eat into the lead times."""
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    for a in assets:
        del raw["devices"]["modbus"][a]
    for dev in raw["devices"]["modbus"].values():
        dev["reconnect"] = {"initial_s": 0.1, "max_s": 1.0}
    nodes: list[dict[str, object]] = []
    for a in assets:
        nodes += [
            {
                "channel": f"{a}_vib",
                "namespace_uri": NS,
                "kind": "waveform",
                "node_id": f"s={a}.vib0.Waveform",
                "sequence_node_id": f"s={a}.vib0.FirstIndex",
                "sampling_interval_ms": 0,
            },
            {
                "channel": f"{a}_temp",
                "namespace_uri": NS,
                "browse_path": ["Machines", a, "Temperature"],
            },
        ]
    raw["devices"]["opcua"] = {
        OPCUA_DEVICE: {
            "endpoint": endpoint,
            "publishing_interval_ms": 50,
            "waveform_queue_size": 256,
            "keepalive_s": 1.0,
            "reconnect": {"initial_s": 0.1, "max_s": 1.0},
            "nodes": nodes,
        }
    }
    out = GatewayConfig.model_validate(raw)
    assert cross_check(out) == []
    return out


async def test_faults_detected_before_failure_and_every_record_arrives(tmp_path: Path) -> None:
    demo, sims = machines()  # (here for their specs; the plant process runs its own copies)
    port, opc_port = free_port(), free_port()
    plant = await PlantProcess.start(port, free_port(), tmp_path / "plant.log")
    try:
        await _run(tmp_path, demo, sims, plant, port, opc_port)
    finally:
        await plant.kill()


async def _run(
    tmp_path: Path,
    demo: list[DemoMachine],
    sims: list[Machine],
    plant: PlantProcess,
    port: int,
    opc_port: int,
) -> None:
    n_mb = len(PLANT)
    async with victoria_metrics(tmp_path / "vm") as vm:
        proxy = FaultProxy(vm.url)
        await proxy.start()
        cfg = demo_config(demo, port, tmp_path / "state", models_dir(), opcua_port=opc_port)
        cfg = with_opcua(cfg, [m.asset for m in demo[n_mb:]], plant.endpoint)
        uplink = InfluxUplinkConfig.model_validate(
            {
                "url": proxy.url,
                "org": "plant",
                "bucket": "pdm",
                "token": "t",
                "flush_interval_s": 0.2,
                "backoff": {"initial_s": 0.05, "max_s": 0.5},
            }
        )
        cfg = cfg.model_copy(update={"uplink": UplinkConfig(influxdb=uplink)})
        pipe = Pipeline(cfg)
        await pipe.start()
        assert pipe.uplink is not None
        episodes: dict[str, set[str]] = {"uplink": set(), "device": set(), "opcua": set()}
        (opc,) = [c for c in pipe.collectors if isinstance(c, OpcUaCollector)]
        modbus = [c for c in pipe.collectors if not isinstance(c, OpcUaCollector)]

        def health() -> dict[str, object]:
            h = pipe.status()["health"]
            assert isinstance(h, dict)
            return h

        async def until(pred: Callable[[], bool], limit_s: float = 30.0) -> None:
            """Re-check ``pred`` each time the store commits a batch (hang guard)."""
            assert pipe.store is not None
            async with asyncio.timeout(limit_s):
                while not pred():
                    await pipe.store.flushed.wait()
                    pipe.store.flushed.clear()

        async def watch_opcua() -> None:
            """Health as seen at each state change of the OPC UA collector."""
            while True:
                await opc.changed.wait()
                opc.changed.clear()
                h = health()
                if any(OPCUA_DEVICE in r for r in h["reasons"]):  # type: ignore[attr-defined]
                    episodes["opcua"].add(str(h["state"]))

        # (the OPC UA simulator stamps sample 0 at the plant's start)
        word, t0 = (await plant.command("start")).split()
        assert word == "started"
        t0_ns = int(t0)
        watcher = asyncio.create_task(watch_opcua())
        try:
            async with asyncio.timeout(30):
                await opc.wait_state("connected")
            # the uplink is cut for a while: health says so, then recovers
            await asyncio.sleep(4)  # let data flow first (the scenario's timeline, not a wait)
            # normal operation so far: the OPC UA waveform path lost nothing
            assert opc.counters.samples_lost == 0, opc.status()
            assert opc.counters.missed_notifications == 0, opc.status()
            assert opc.counters.blocks > 0
            # the OPC UA server restarts before pumpOX's fault shows: the collector reconnects
            # by itself, data flows again (the gap is counted as lost samples)
            restart_ns = time.time_ns()
            assert await plant.command("restart_opcua") == "restarted"
            restarted_ns = time.time_ns()
            await until(lambda: opc.counters.reconnects >= 1 and opc.state == "connected")
            outage = (restarted_ns - restart_ns) / 1e9, (time.time_ns() - restart_ns) / 1e9
            blocks = opc.counters.blocks
            await until(lambda: opc.counters.blocks > blocks + 10)
            lost_in_restart = opc.counters.samples_lost
            proxy.mode = "cut"
            await until(lambda: any("uplink" in r for r in health()["reasons"]))  # type: ignore[attr-defined]
            episodes["uplink"].add(str(health()["state"]))
            await asyncio.sleep(4)
            proxy.mode = "pass"
            await until(lambda: pipe.uplink is not None and pipe.uplink.state == "up")
            # every Modbus device stops answering for a while, then comes back (the OPC UA
            # device keeps the gateway only degraded)
            outage_ns = time.time_ns()
            assert await plant.command("inject no_response") == "ok"
            await until(lambda: all(c.state == "unreachable" for c in modbus))
            episodes["device"].add(str(health()["state"]))
            down_ns = time.time_ns()
            assert await plant.command("clear no_response") == "ok"
            await until(lambda: all(c.state == "connected" for c in pipe.collectors))
            modbus_outage = (
                (outage_ns - t0_ns) / 1e9,
                (down_ns - outage_ns) / 1e9,
                (time.time_ns() - down_ns) / 1e9,
            )
            # run through every simulated failure
            remaining = FAIL_AFTER_S + 2 - (time.time_ns() - t0_ns) / 1e9
            await asyncio.sleep(max(0.0, remaining))
            async with Client(f"opc.tcp://127.0.0.1:{opc_port}/") as client:
                srv = pipe.opcua_server
                assert srv is not None
                for a in ("pumpOR", "pumpOX"):
                    node = client.get_node(srv.node_id(f"Assets.{a}.HealthState"))
                    assert await node.read_value() >= 3, a  # Warning or worse
        finally:
            watcher.cancel()
            await plant.stop()
        opc_status = opc.status()
        mb_status = [c.status() for c in modbus]
        dsp_gaps = pipe.dsp.status()["gaps"]
        # after the restart, normal operation again: nothing more lost
        assert opc_status["samples_lost"] == lost_in_restart, opc_status
        assert opc_status["missed_notifications"] == 0, opc_status
        await asyncio.wait_for(pipe.uplink.drained(), 60)
        assert await pipe.stop()
        await proxy.stop()

        j = Journal(cfg.store_path())
        try:
            # what the sink acknowledged (records journaled while the gateway drained at stop
            # stay in the journal for the next run)
            bulk_acked, prio_acked = j.cursor("influxdb", "bulk"), j.cursor("influxdb", "priority")
            all_bulk = j.read("check", 10**7, "bulk")
            prio = j.read("check", 10**7, "priority")
        finally:
            j.close()
        raised = [r for r in prio if r.kind == "alert" and r.payload["state"] == "raised"]
        run_s = (time.time_ns() - t0_ns) / 1e9
        report = []
        for m, sim in zip(demo, sims, strict=True):
            first = min((r.ts_ns for r in raised if r.asset == m.asset), default=None)
            if m.description == "healthy":
                continue
            assert first is not None, f"{m.asset} ({m.description}) never alerted"
            alert_wall = (first - t0_ns) / 1e9
            lead_days = (FAIL_AFTER_S - alert_wall) * sim.speed / DAY_S
            report.append(f"{m.asset} {m.description}: lead {lead_days:.1f} machine days")
            assert alert_wall < FAIL_AFTER_S, f"{m.asset} alerted after its failure"
            (fault,) = sim.spec.faults
            assert alert_wall > fault.onset_s / sim.speed, f"{m.asset} alerted before its fault"
        healthy = [(m, s) for m, s in zip(demo, sims, strict=True) if m.description == "healthy"]
        machine_days = sum(run_s * s.speed / DAY_S for _, s in healthy)
        false_alarms = sum(1 for r in raised if r.asset in {m.asset for m, _ in healthy})
        print("\n" + "\n".join(report))
        print(
            f"false alarms: {false_alarms} in {machine_days:.0f} healthy machine-days "
            f"({false_alarms / machine_days:.3f} per machine-day)"
        )
        assert false_alarms <= FA_BUDGET_PER_MACHINE_DAY * machine_days
        assert episodes == {"uplink": {"degraded"}, "device": {"degraded"}, "opcua": {"degraded"}}
        print(
            f"OPC UA server restart: down {outage[0]:.1f} s, collector reconnected after "
            f"{outage[1]:.1f} s, {lost_in_restart} samples lost over the outage "
            f"({opc_status['missed_notifications']} missed notifications, "
            f"{opc_status['blocks']} blocks)"
        )

        print(
            "Modbus collectors: {} samples lost in {} overruns, {} late polls; DSP gaps {}".format(
                sum(int(st["samples_lost"]) for st in mb_status),  # type: ignore[call-overload]
                sum(int(st["overruns"]) for st in mb_status),  # type: ignore[call-overload]
                sum(int(st["late_polls"]) for st in mb_status),  # type: ignore[call-overload]
                dsp_gaps,
            )
        )
        print(
            "Modbus outage at {:.1f} s: all unreachable after {:.1f} s, all reconnected "
            "{:.1f} s after the devices answered again".format(*modbus_outage)
        )

        bulk = [r for r in all_bulk if r.seq <= bulk_acked]
        assert len(bulk) > 0.9 * len(all_bulk)
        # every acknowledged feature, score and alert is on the server, once per key
        rms = await vm.samples("feature_rms")
        for m in demo:
            ch = f"{m.asset}_vib"
            sent = sorted(
                r.ts_ns // 1_000_000 for r in bulk if r.kind == "feature" and r.channel == ch
            )
            got = [ts for k, v in rms.items() if dict(k)["channel"] == ch for ts in v]
            assert sorted(got) == sent, ch
        # pumpOX's fault was detected on data read after the restart
        assert any(r.asset == "pumpOX" and r.ts_ns > restarted_ns for r in raised)
        for m in demo[n_mb:]:  # the OPC UA machines' data flowed again after the restart
            ch = f"{m.asset}_vib"
            assert any(
                r.channel == ch and r.ts_ns > restarted_ns for r in bulk if r.kind == "feature"
            )
        states = await vm.samples("alert_state_code")
        sent_alerts = sum(1 for r in prio if r.kind == "alert" and r.seq <= prio_acked)
        assert sum(len(v) for v in states.values()) == sent_alerts
        scores = await vm.samples("score_score")
        assert sum(len(v) for v in scores.values()) == sum(1 for r in bulk if r.kind == "score")
