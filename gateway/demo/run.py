"""Run the demo: simulators on a real Modbus TCP server, the gateway with the embedded
configuration, the dashboard until stopped, then a summary and optionally the plots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live

from gateway.core.records import AlertState
from gateway.demo import free_port
from gateway.demo.dashboard import board, render_rich, render_text
from gateway.demo.plant import (
    acceleration_for,
    demo_config,
    demo_machines,
    models_dir,
    outer_race_fault,
    simulated,
)
from gateway.demo.plots import require_matplotlib, write_plots
from gateway.demo.watch import PlantTap, Watch
from gateway.runtime.pipeline import Pipeline
from simulators.modbus_server import MachineModbusServer
from simulators.plant import Plant


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float | None = None  #: stop after this many seconds (None: until stopped)
    state_dir: Path | None = None  #: keep the store here (None: a temporary folder)
    failure_after_s: float = 240.0  #: wall seconds until the simulated bearing failure
    plots_dir: Path | None = None
    opcua: bool = False
    refresh_s: float | None = None  #: None: 1 s on a terminal, 5 s otherwise
    live: bool | None = None  #: None: a live screen when ``out`` is a terminal


async def run_demo(opts: DemoOptions, stop: asyncio.Event, out: TextIO) -> int:
    """Run until ``stop`` is set or ``opts.duration_s`` passes. Raises ``FileNotFoundError``
    (no shipped models) or ``PlotsUnavailable`` before starting anything."""
    models = models_dir()
    if opts.plots_dir is not None:
        require_matplotlib()
    tmp = None
    state_dir = opts.state_dir
    if state_dir is None:
        tmp = tempfile.mkdtemp(prefix="pdm-demo-")
        state_dir = Path(tmp)
    live_screen = out.isatty() if opts.live is None else opts.live
    refresh = opts.refresh_s or (1.0 if live_screen else 5.0)
    fault = outer_race_fault()
    acceleration = acceleration_for(opts.failure_after_s)
    plan = demo_machines()
    machines = simulated(plan, acceleration)
    port = free_port()
    cfg = demo_config(plan, port, state_dir, models, free_port() if opts.opcua else None)
    sim = MachineModbusServer(machines, port=port)
    await sim.start()
    plant = Plant(machines)
    pipeline = Pipeline(cfg)
    watch = Watch([m.asset for m in plan], pipeline.clock.now_ns())
    pipeline.alerts.publishers.append(watch)
    plant.publishers += [sim, PlantTap(watch)]
    plant.start()
    faulty = next(m.asset for m in plan if m.spec.faults)
    about = [
        f"simulated: {faulty} outer-race defect from machine day {fault.onset_s / 86400:.0f} "
        f"(t = {fault.onset_s / acceleration:.0f} s) to failure at day "
        f"{fault.failure_s / 86400:.0f} (t = {fault.failure_s / acceleration:.0f} s); "
        f"machine time x{acceleration:.0f}; Modbus TCP 127.0.0.1:{port}",
        f"store: {cfg.store_path()}",
    ]
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def snapshot() -> str | object:
        b = board(
            cfg,
            watch,
            pipeline.status(),
            pipeline.clock.now_ns(),
            loop.time() - t0,
            [*about, *endpoints(pipeline)],
        )
        return render_rich(b) if live_screen else render_text(b)

    console = Console(file=out)
    out.write("pdm-gateway demo: starting the simulators and the gateway...\n")
    out.flush()
    try:
        await pipeline.start()
        with contextlib.ExitStack() as stack:
            live = None
            if live_screen:
                live = stack.enter_context(
                    Live(console=console, auto_refresh=False, redirect_stderr=sys.stderr.isatty())
                )
                stack.enter_context(logs_above_screen())
            while not stop.is_set():
                elapsed = loop.time() - t0
                if opts.duration_s is not None and elapsed >= opts.duration_s:
                    break
                view = snapshot()
                if live is not None:
                    live.update(view, refresh=True)  # type: ignore[arg-type]
                else:
                    out.write(f"{view}\n\n")
                    out.flush()
                wait = refresh
                if opts.duration_s is not None:
                    wait = min(wait, opts.duration_s - elapsed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.0))
    finally:
        await pipeline.stop()
        await plant.stop()
        await sim.stop()
    final = board(cfg, watch, pipeline.status(), pipeline.clock.now_ns(), loop.time() - t0, about)
    out.write(f"{render_text(final)}\n\n")
    out.write(summary(watch) + "\n")
    if opts.plots_dir is not None:
        for p in write_plots(opts.plots_dir, cfg, watch):
            out.write(f"plot: {p}\n")
    out.flush()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


@contextlib.contextmanager
def logs_above_screen() -> Iterator[None]:
    """Inside a rich ``Live`` (which wraps ``sys.stderr``): point the root logger's stderr
    handlers at the wrapper, so log lines print above the live screen instead of through it."""
    wrapped = sys.stderr is not sys.__stderr__
    handlers = [
        h
        for h in logging.getLogger().handlers
        if wrapped and isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__
    ]
    for h in handlers:
        h.setStream(sys.stderr)
    try:
        yield
    finally:
        for h in handlers:
            h.setStream(sys.__stderr__)


def endpoints(pipeline: Pipeline) -> list[str]:
    """The endpoints a viewer can open: OPC UA (when on), health and metrics."""
    out = []
    if pipeline.opcua_server is not None:
        out.append(f"OPC UA server: {pipeline.opcua_server.url} (security None, anonymous read)")
    if pipeline.http is not None and pipeline.http.url:
        out.append(f"health and metrics: {pipeline.http.url}/healthz  {pipeline.http.url}/metrics")
    return out


def summary(watch: Watch) -> str:
    """One line: alerts raised per asset during the run."""
    raised: dict[str, list[str]] = {a: [] for a in watch.assets}
    for ev in watch.events:
        if ev.state is AlertState.RAISED and ev.asset in raised:
            raised[ev.asset].append(ev.rule)
    return "alerts raised: " + "; ".join(
        f"{a} {len(r)}" + (f" ({', '.join(sorted(set(r)))})" if r else "")
        for a, r in raised.items()
    )
