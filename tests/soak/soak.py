"""Soak run: a simulator and a gateway as separate processes for a bounded time, sampling the
gateway's resident memory and open file descriptors, then a report.

    python -m tests.soak.soak --minutes 30 [--machines 8] [--speed 2000] [--out soak.json]

(``make soak`` runs it for 30 minutes.) Memory growth is measured between the mean RSS of the
second quarter of the run (after warm-up: imports, caches, the journal's page cache) and the
mean of the last quarter, so a leak shows as a slope and not as start-up cost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.demo import free_port
from tests.conftest import plant_toml

CLI = [sys.executable, "-m", "gateway.cli"]


@dataclass
class SoakReport:
    duration_s: float
    machines: int
    samples: list[tuple[float, int, int]]  # (seconds since start, RSS bytes, open fds)
    rss_growth_mib: float
    fd_growth: int
    records_written: int
    exit_code: int

    def summary(self) -> str:
        rss = [s[1] for s in self.samples]
        return (
            f"soak {self.duration_s:.0f} s, {self.machines} machine(s): RSS "
            f"{min(rss) / 2**20:.1f}..{max(rss) / 2**20:.1f} MiB, growth after warm-up "
            f"{self.rss_growth_mib:+.2f} MiB; open fds {self.samples[0][2]}.."
            f"{max(s[2] for s in self.samples)}"
            f" (growth {self.fd_growth:+d}); {self.records_written} records journaled; "
            f"exit {self.exit_code}"
        )


def _rss_and_fds(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _wait_line(proc: subprocess.Popen[str], needle: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if needle in line:
            return
    raise RuntimeError(f"{needle!r} never printed (exit {proc.wait()})")


def soak(
    duration_s: float, machines: int = 4, speed: float = 2000.0, every_s: float = 1.0
) -> SoakReport:
    """Run the soak; the caller owns nothing afterwards (both processes are stopped)."""
    from gateway.store.journal import Journal

    with tempfile.TemporaryDirectory(prefix="pdm-soak-") as tmp:
        state = Path(tmp) / "state"
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        sim = subprocess.Popen(
            [
                *CLI,
                "simulate",
                "--modbus-port",
                str(port),
                "--machines",
                str(machines),
                "--scenario",
                "outer-race",
                "--speed",
                str(speed),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        gw: subprocess.Popen[str] | None = None
        try:
            _wait_line(sim, "listening on")
            cfg = Path(tmp) / "gw.toml"
            cfg.write_text(plant_toml(port, state, units=machines))
            gw = subprocess.Popen(
                [*CLI, "run", str(cfg), "--log-level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            samples: list[tuple[float, int, int]] = []
            t0 = time.monotonic()
            next_at = t0
            while (now := time.monotonic()) - t0 < duration_s:
                if gw.poll() is not None:
                    raise RuntimeError(f"gateway exited early with {gw.returncode}")
                rss, fds = _rss_and_fds(gw.pid)
                samples.append((now - t0, rss, fds))
                next_at += every_s
                time.sleep(max(0.0, next_at - time.monotonic()))
            gw.send_signal(signal.SIGTERM)
            code = gw.wait(timeout=60)
        finally:
            for p in (gw, sim):
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
        j = Journal(state / "journal.sqlite")
        try:
            written = j.count()
        finally:
            j.close()
    n = len(samples)
    q2 = samples[n // 4 : n // 2] or samples
    q4 = samples[3 * n // 4 :] or samples
    growth = (sum(s[1] for s in q4) / len(q4) - sum(s[1] for s in q2) / len(q2)) / 2**20
    return SoakReport(duration_s, machines, samples, growth, q4[-1][2] - q2[0][2], written, code)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--speed", type=float, default=2000.0)
    ap.add_argument("--out", type=Path, default=Path("soak-results.json"))
    args = ap.parse_args()
    report = soak(args.minutes * 60, args.machines, args.speed, every_s=5.0)
    print(report.summary())
    args.out.write_text(json.dumps(asdict(report), indent=1) + "\n")
    print(f"samples written to {args.out}")
    return 0 if report.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
