"""Command line: ``pdm-gateway run | status | demo | simulate | check-config | replay | models |
opcua``.

Exit codes: 0 success; 1 runtime failure; 2 bad configuration or usage; 3 a local resource
(a port, the store file) is unavailable. Expected failures print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway import opcua_pki_cli as opcua_cli
from gateway.config.loader import load_config
from gateway.core.errors import ConfigError, ResourceUnavailableError
from gateway.runtime.logs import setup_logging

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3
log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pdm-gateway", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--version", action="version", version=f"pdm-gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def logging_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--log-format", choices=("text", "json"), default="text")
        sp.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)

    run = sub.add_parser("run", help="run the gateway from a config file")
    run.add_argument("config", type=Path)
    logging_args(run)

    chk = sub.add_parser("check-config", help="validate a config file: prints ok or every error")
    chk.add_argument("config", type=Path)

    demo = sub.add_parser("demo", help="simulated machines + gateway + live view")
    from gateway.demo.command import add_demo_args

    add_demo_args(demo)
    logging_args(demo)

    rep = sub.add_parser("replay", help="run recorded waveforms through the live features")
    rep.add_argument(
        "--input",
        type=Path,
        action="append",
        required=True,
        help=".npy, .csv (a column per channel) or .wav; repeatable",
    )
    rep.add_argument("--sample-rate", type=float, required=True, help="Hz")
    rep.add_argument("--config", type=Path, default=None)
    rep.add_argument("--model", type=Path, default=None)
    rep.add_argument("--kind", choices=("vibration", "acoustic"), default="vibration")
    rep.add_argument("--unit", default="", help="default: g for vibration, Pa for acoustic")
    rep.add_argument("--out", type=Path, required=True, help="FILE.jsonl")

    st = sub.add_parser("status", help="print the status of a running gateway")
    st.add_argument("--config", type=Path, default=None)
    st.add_argument("--url", default=None, help="e.g. http://127.0.0.1:9750")
    st.add_argument("--json", action="store_true", help="the raw status snapshot")
    from gateway.inference.commands import add_models_parser

    add_models_parser(sub)

    sim = sub.add_parser("simulate", help="serve simulated machines over Modbus TCP / OPC UA")
    sim.add_argument(
        "--scenario", default="healthy", help="a name in simulators/scenarios or a path"
    )
    sim.add_argument("--machines", type=int, default=3)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--modbus-port", type=int, default=5020)
    sim.add_argument("--opcua-port", type=int, default=None)
    sim.add_argument(
        "--rtu", action="store_true", help="also serve Modbus RTU on a pseudo-terminal pair"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="machine-time acceleration for degradation (signals stay real-time)",
    )
    sim.add_argument("--truth", type=Path, default=None, help="write the ground truth JSON here")
    sim.add_argument("--print-map", action="store_true", help="print the Modbus register map")
    logging_args(sim)
    opcua_cli.add_parser(sub)
    return p


def _print_config_error(exc: ConfigError) -> None:
    print(exc, file=sys.stderr)  # one 'key.path: reason' line each


def cmd_check_config(path: Path) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    if cfg.models.assets:
        from gateway.inference.stage import load_models

        try:
            load_models(
                cfg.models, cfg.gateway.state_dir, dict(cfg.channels), dict(cfg.assets), cfg.dsp
            )
        except ConfigError as exc:
            _print_config_error(exc)
            return EXIT_CONFIG
    print("ok")
    return EXIT_OK


async def _until_signal(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _run(path: Path) -> int:
    from gateway.runtime import systemd
    from gateway.runtime.pipeline import Pipeline

    cfg = load_config(path)
    stop = asyncio.Event()
    await _until_signal(stop)
    pipeline = Pipeline(cfg)
    await pipeline.start()
    watchdog = None
    interval = systemd.watchdog_interval_s()
    if interval is not None:
        watchdog = asyncio.create_task(systemd.Watchdog(pipeline.clock, interval).run())
    systemd.notify(f"READY=1\nSTATUS=collecting from {len(pipeline.collectors)} device(s)")
    await stop.wait()
    log.info("signal received: draining")
    systemd.notify("STOPPING=1")
    await pipeline.stop()
    if watchdog is not None:
        watchdog.cancel()
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.command import demo_main

    stop = asyncio.Event()
    await _until_signal(stop)
    return await demo_main(args, stop)


async def _simulate(args: argparse.Namespace) -> int:
    from simulators.runner import Simulation
    from simulators.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    machines = scenario.machines(args.machines, seed=args.seed, speed=args.speed)
    stop = asyncio.Event()
    await _until_signal(stop)
    sim = Simulation(
        args.scenario,
        scenario,
        machines,
        host=args.host,
        modbus_port=args.modbus_port,
        opcua_port=args.opcua_port,
        seed=args.seed,
        speed=args.speed,
        truth_path=args.truth,
        rtu=args.rtu,
    )
    await sim.start()
    where = [f"modbus tcp {args.host}:{args.modbus_port} (units 1..{len(machines)})"]
    if args.opcua_port is not None:
        where.append(f"opc.tcp://{args.host}:{args.opcua_port}/pdm-sim/")
    if sim.rtu_client_path is not None:
        where.append(f"modbus rtu {sim.rtu_client_path} at {sim.rtu_baudrate} baud, 8N1")
    print(
        f"listening on {args.host}:{args.modbus_port}; scenario {args.scenario}: "
        + ", ".join(where),
        flush=True,
    )
    await stop.wait()
    await sim.stop()
    return EXIT_OK


def _print_map(args: argparse.Namespace) -> int:
    from simulators.modbus_map import describe
    from simulators.scenario import load_scenario

    machine = load_scenario(args.scenario).machines(1)[0]
    print(describe(machine.channels))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return cmd_check_config(args.config)
    if args.command == "status":
        from gateway.status_cli import main_status

        try:
            return main_status(args.config, args.url, args.json)
        except ConfigError as exc:
            _print_config_error(exc)
            return EXIT_CONFIG
    if args.command == "models":
        from gateway.inference.commands import main_models

        return main_models(args)
    if args.command == "opcua":
        return opcua_cli.main(args)
    if args.command == "replay":
        from gateway.replay import main_replay

        try:
            return main_replay(
                args.input,
                args.sample_rate,
                args.out,
                args.config,
                args.model,
                args.kind,
                args.unit or ("g" if args.kind == "vibration" else "Pa"),
            )
        except ConfigError as exc:
            _print_config_error(exc)
            return EXIT_CONFIG
    level = args.log_level or "info"
    setup_logging(level if args.command != "demo" or args.log_level else "warning", args.log_format)
    try:
        if args.command == "run":
            return asyncio.run(_run(args.config))
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "simulate":
            if args.print_map:
                return _print_map(args)
            return asyncio.run(_simulate(args))
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except ResourceUnavailableError as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_FAILURE


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
