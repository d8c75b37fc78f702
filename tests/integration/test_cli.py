"""The command line as a user runs it: real processes, real signals, exit codes, one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo import free_port
from gateway.store.journal import Journal
from tests.conftest import plant_toml

CLI = [sys.executable, "-m", "gateway.cli"]


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def lines_until(stream: Iterator[str], needle: str, seen: list[str]) -> None:
    """Read lines (blocking on the pipe, i.e. on the process's own events) until ``needle``."""
    for line in stream:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never appeared in:\n{''.join(seen)}")


@pytest.fixture
def simulator() -> Iterator[int]:
    port = free_port()
    proc = spawn("simulate", "--modbus-port", str(port), "--machines", "2")
    assert proc.stdout is not None
    lines_until(proc.stdout, "listening on", [])
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0


def test_run_then_sigterm_drains_and_exits_zero(simulator: int, tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(plant_toml(simulator, Path("state"), units=2))
    proc = spawn("run", str(cfg), "--log-format", "json")
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        lines_until(proc.stderr, "first", seen)  # "store: first N record(s) written"
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a hung gateway must not outlive the test
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    log = "".join(seen) + rest
    assert '"msg": "gateway stopped (drained)' in log
    assert "Traceback" not in log
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        assert j.count("feature") > 0
    finally:
        j.close()


def test_simulate_on_a_busy_port_fails_with_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [*CLI, "simulate", "--modbus-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1] == (
        f"pdm-gateway: cannot listen on 127.0.0.1:{port}: address in use or not available"
    )
    assert "Traceback" not in proc.stderr


def test_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(plant_toml(5020, tmp_path, units=1).replace("window = 1024", "window = 'big'"))
    proc = subprocess.run([*CLI, "run", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "dsp.window: Input should be a valid integer, unable to parse string as an integer"
    )


def test_run_with_unwritable_store_exits_3(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(plant_toml(free_port(), Path("state"), units=1))
    proc = subprocess.run([*CLI, "run", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("pdm-gateway: cannot open store")
    assert "Traceback" not in proc.stderr
