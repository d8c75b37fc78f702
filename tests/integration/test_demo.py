"""``pdm-gateway demo`` as a user runs it, headless: the simulated pump's outer-race defect is
alerted on, the healthy machines are not, SCADA sees it over OPC UA, the store holds it all,
``--plots`` writes the PNGs, and Ctrl-C ends the demo cleanly. Machine time runs fast (failure
12 s after the start)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

from asyncua import Client

from gateway.demo.plant import demo_machines, models_dir
from gateway.demo.plots import FILES
from gateway.inference.manifest import read_manifest
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.store.journal import Journal
from tests.integration.test_cli import CLI, lines_until, spawn

HEALTHY = {"pump1", "fan2"}
FAULTY = "pump3"
NORMAL, ALARM = 1, 4  # HealthState values of the OPC UA server


async def health_states(url: str) -> dict[str, int]:
    """HealthState of every demo asset, read by a real OPC UA client."""
    client = Client(url)
    async with asyncio.timeout(30):
        await client.connect()
    try:
        idx = await client.get_namespace_index(OpcUaServerConfig().namespace_uri)
        assets = await client.nodes.objects.get_child(f"{idx}:Assets")
        out = {}
        for a in (*HEALTHY, FAULTY):
            node = await assets.get_child([f"{idx}:{a}", f"{idx}:HealthState"])
            out[a] = int(await node.read_value())
        return out
    finally:
        await client.disconnect()


def test_demo_alerts_on_the_faulty_machine_only_and_writes_plots(tmp_path: Path) -> None:
    state, plots = tmp_path / "state", tmp_path / "plots"
    proc = spawn(
        "demo",
        "--failure-after",
        "12",
        "--refresh",
        "1",
        "--duration",
        "90",  # a bound only: the test stops it with SIGINT once the alarm shows
        "--state-dir",
        str(state),
        "--plots",
        str(plots),
        "--opcua",
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        # the alarm-level score rule raises once the defect is well grown (~40% of its life)
        lines_until(proc.stdout, f"alarm    {FAULTY}    {FAULTY}_score_high", seen)
        lines_until(proc.stdout, "health and metrics: ", seen)
        opc = re.search(r"OPC UA server: (opc\.tcp://\S+)", "".join(seen))
        http = re.search(r"health and metrics: (http://\S+)/healthz", "".join(seen))
        assert opc is not None
        assert http is not None
        states = asyncio.run(health_states(opc.group(1)))
        assert states == {"pump1": NORMAL, "fan2": NORMAL, FAULTY: ALARM}
        with urllib.request.urlopen(f"{http.group(1)}/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert b"pdm_" in resp.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    text = "".join(seen) + out
    assert "Traceback" not in err

    # the final snapshot (after the gateway drained) and the summary
    final = text.strip().split("\n\n")[-2].splitlines()
    assert final[1].split()[:3] == ["asset", "health", "device"]
    rows = {line.split()[0]: line.split() for line in final[2:5]}
    assert set(rows) == {*HEALTHY, FAULTY}
    for asset, cols in rows.items():
        assert cols[2] == "connected"
        assert 0.1 < float(cols[6]) < 100  # velocity RMS, mm/s
        assert 20 < float(cols[9]) < 120  # temperature, degC
        assert cols[1] == ("alarm" if asset == FAULTY else "ok")
    summary = next(line for line in out.splitlines() if line.startswith("alerts raised:"))
    assert "pump1 0; fan2 0; pump3 " in summary
    assert f"{FAULTY}_score," in summary

    # the journal: scores of every asset, alerts raised on the faulty pump only
    j = Journal(state / "journal.sqlite")
    try:
        rows_ = j.read("check", 1_000_000) + j.read("check", 1_000_000, "priority")
    finally:
        j.close()
    raised = [r for r in rows_ if r.kind == "alert" and r.payload["state"] == "raised"]
    assert {r.asset for r in raised} == {FAULTY}
    assert {r.payload["rule"] for r in raised} >= {f"{FAULTY}_score", f"{FAULTY}_score_high"}
    scores = [r for r in rows_ if r.kind == "score"]
    assert {r.asset for r in scores} == {*HEALTHY, FAULTY}
    threshold = read_manifest(models_dir() / "motor-pump").threshold
    assert max(r.payload["score"] for r in scores if r.asset == FAULTY) > 4 * threshold

    for name in FILES:
        png = (plots / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 10_000, name  # drawn, not an empty canvas
        assert f"plot: {plots / name}" in out


def test_demo_rejects_a_bad_acceleration() -> None:
    proc = subprocess.run(
        [*CLI, "demo", "--failure-after", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "pdm-gateway: --failure-after must be positive"


def test_demo_without_the_shipped_models_says_where_they_should_be(tmp_path: Path) -> None:
    try:
        models_dir(tmp_path)
    except FileNotFoundError as exc:
        msg = str(exc)
    else:
        raise AssertionError("no error")
    assert str(tmp_path / "models") in msg
    assert "missing: motor-pump, fan" in msg
    assert "\n" not in msg


def test_demo_machines_match_the_shipped_model_classes() -> None:
    from models.train import CLASSES

    shaft = {c.name: c.shaft_hz for c in CLASSES}
    plan = demo_machines()
    for m in plan:
        assert m.spec.shaft_hz == shaft[m.model_id]
        assert (
            m.spec.vibration_rate_hz
            > 2 * read_manifest(models_dir() / m.model_id).dsp.max_frequency_hz
        )
    assert [m.asset for m in plan if m.spec.faults] == [FAULTY]
