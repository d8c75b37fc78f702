"""Security checks on a real gateway process: secrets never reach the logs, the status endpoint or
the metrics (even at debug level, while the uplink and a secured device fail); the store, the
PKI and the model registry are created owner-only."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from gateway.demo import free_port
from gateway.inference.config import ModelsConfig
from gateway.inference.registry import Registry
from gateway.opcua_pki import Pki
from gateway.store.journal import Journal
from tests.conftest import REPO

TOKEN = "tok-5f1c0e9d7a2b4c3e"
PASSWORD = "pw-9a8b7c6d5e4f"


def config(state: Path) -> str:
    return f"""
[gateway]
state_dir = "{state.as_posix()}"

[channels.t1]
kind = "temperature"

[assets.a1]
channels = ["t1"]

[devices.opcua.cms]
endpoint = "opc.tcp://127.0.0.1:{free_port()}"
username = "pdm"
password = "${{PDM_TEST_OPCUA_PASSWORD}}"
reconnect = {{ initial_s = 0.05, max_s = 0.2 }}

[[devices.opcua.cms.nodes]]
channel = "t1"
namespace_uri = "urn:x"
node_id = "s=T1"

[alerts.rules.t1_lost]       # a sensor alert: a record for the uplink to (fail to) send
asset = "a1"
source = "sensor"
channel = "t1"
condition = "disconnected"

[uplink.influxdb]
url = "http://127.0.0.1:{free_port()}"
org = "plant"
bucket = "pdm"
token = "${{PDM_TEST_TOKEN}}"
flush_interval_s = 0.1

[runtime.http]
port = 0
"""


def test_secrets_never_reach_logs_status_or_metrics(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    state = tmp_path / "state"
    cfg.write_text(config(state))
    env = {
        **os.environ,
        "PDM_TEST_TOKEN": TOKEN,
        "PDM_TEST_OPCUA_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", str(cfg), "--log-level", "debug"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    guard = threading.Timer(60, proc.kill)  # a hang guard: a stuck gateway fails the test
    guard.start()
    try:
        assert proc.stderr is not None
        want = {"device cms unreachable", "uplink influxdb down"}
        for line in proc.stderr:  # blocks on the gateway's own output
            seen.append(line)
            want = {w for w in want if w not in line}
            if not want:
                break
        assert not want, "".join(seen)
        url = (state / "http.url").read_text().strip()
        with urllib.request.urlopen(f"{url}/status", timeout=10) as r:
            status = r.read().decode()
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert json.loads(status)["devices"]["cms"]["state"] == "unreachable"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    everything = "".join(seen) + err + out + status + metrics
    assert proc.returncode == 0, err
    assert TOKEN not in everything
    assert PASSWORD not in everything
    # the config check prints paths and reasons, not values
    bad = cfg.read_text().replace('org = "plant"', 'org = ""')
    cfg.write_text(bad)
    chk = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert chk.returncode == 2
    assert TOKEN not in chk.stdout + chk.stderr
    assert PASSWORD not in chk.stdout + chk.stderr


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_store_keys_and_certificates_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    j = Journal(state / "journal.sqlite")
    try:
        j.append([])
    finally:
        j.close()
    assert mode(state) & 0o077 == 0
    for f in state.glob("journal.sqlite*"):
        assert mode(f) & 0o077 == 0, f
    pki = Pki(state / "pki")
    cert, key = pki.ensure_own_certificate("urn:test:pdm-gateway")
    assert mode(key) == 0o600
    assert mode(state / "pki") & 0o077 == 0
    assert mode(key.parent) & 0o077 == 0
    assert cert.exists()
    reg = Registry(ModelsConfig(allow_unsigned=True), state)
    reg.install(REPO / "models" / "motor-pump")
    assert mode(reg.root) & 0o077 == 0
