"""Operations: the systemd unit, sd_notify/watchdog from a real gateway process, the health and
metrics endpoint following a device outage, and ``pdm-gateway status``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli import main
from gateway.config.loader import parse_config
from gateway.demo import free_port
from gateway.runtime.pipeline import Pipeline
from tests.conftest import REPO, Sim, plant_toml

UNIT = REPO / "deploy" / "systemd" / "pdm-gateway.service"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit, in a root holding the ExecStart binary and
    the system's own units (so verification does not depend on this machine's /opt)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: tests/setup-system-deps.sh installs it"
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    exe = root / "opt/pdm-gateway/venv/bin/pdm-gateway"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = root / "etc/systemd/system" / UNIT.name
    shutil.copy(UNIT, unit)
    proc = subprocess.run(
        [analyze, "verify", f"--root={root}", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stderr + proc.stdout) == (0, "")
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=pdm-gateway",
        "User=pdm-gateway",
    ):
        assert line in text


def test_run_notifies_ready_sends_watchdog_from_the_loop_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(60)  # a hang guard, not a timing assertion
        cfg = tmp_path / "gw.toml"
        cfg.write_text(plant_toml(free_port(), tmp_path / "state", units=1))  # device down: fine
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(sock_path),
            "WATCHDOG_USEC": "200000",
            "PYTHONUNBUFFERED": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            got: list[str] = []
            while got.count("WATCHDOG=1") < 3:
                got.append(sock.recv(4096).decode())
            assert got[0] == "READY=1\nSTATUS=collecting from 1 device(s)"
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in got:
                got.append(sock.recv(4096).decode())
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err


async def _get(url: str) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    return await asyncio.get_running_loop().run_in_executor(None, fetch)


async def _health_until(url: str, state: str) -> dict[str, object]:
    """Poll ``/healthz`` until it reports ``state`` (each poll waits on the device's own
    reconnect timers, so no fixed sleep decides the outcome; 30 s hang guard)."""
    async with asyncio.timeout(30):
        while True:
            _, body = await _get(f"{url}/healthz")
            h: dict[str, object] = json.loads(body)
            if h["state"] == state:
                return h
            await asyncio.sleep(0.05)


async def test_healthz_follows_a_device_outage_and_metrics_parse(
    modbus_sim: Sim, port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = parse_config(plant_toml(port, tmp_path, units=2), base_dir=tmp_path, source="<t>")
    pipe = Pipeline(cfg)
    await pipe.start()
    try:
        assert pipe.http is not None
        url = pipe.http.url
        assert (tmp_path / "http.url").read_text().strip() == url
        await asyncio.gather(*(c.wait_state("connected") for c in pipe.collectors))
        assert (await _health_until(url, "ok"))["reasons"] == []

        modbus_sim.server.inject("no_response")
        h = await _health_until(url, "failing")  # both machines sit behind this one server
        assert h["reasons"] == ["all devices unreachable: m1, m2"]
        code, _ = await _get(f"{url}/healthz")
        assert code == 503
        modbus_sim.server.clear("no_response")
        await _health_until(url, "ok")

        code, body = await _get(f"{url}/metrics")
        assert code == 200
        names = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        for series in (
            "pdm_device_state",
            "pdm_device_read_latency_seconds",
            "pdm_device_errors_total",
            "pdm_channel_gaps_total",
            "pdm_queue_depth",
            "pdm_queue_dropped_total",
            "pdm_loop_lag_seconds",
            "pdm_stage_restarts_total",
            "pdm_store_written_total",
            "pdm_health",
        ):
            assert series in names

        cfg_file = tmp_path / "gw.toml"
        cfg_file.write_text(plant_toml(port, tmp_path, units=2))
        code = await asyncio.get_running_loop().run_in_executor(
            None, main, ["status", "--config", str(cfg_file)]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert out.splitlines()[0] == "gateway pdm-gateway: ok"
        assert "m1               connected" in out
    finally:
        await pipe.stop()
    assert not (tmp_path / "http.url").exists()
    assert main(["status", "--url", url]) == 3
    assert "no gateway answers at" in capsys.readouterr().out
