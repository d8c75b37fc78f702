"""``pdm-gateway demo`` arguments and entry point."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

#: exit code of a demo that cannot start (no shipped models, no matplotlib for --plots)
EXIT_UNAVAILABLE = 3


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    p.add_argument("--state-dir", type=Path, default=None, help="keep the store here")
    p.add_argument(
        "--failure-after",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="wall seconds until the simulated bearing failure (sets the machine-time "
        "acceleration; default 240)",
    )
    p.add_argument("--plots", type=Path, default=None, metavar="DIR", help="write PNG plots here")
    p.add_argument("--opcua", action="store_true", help="also serve OPC UA on 127.0.0.1")
    p.add_argument(
        "--refresh", type=float, default=None, metavar="SECONDS", help="dashboard refresh period"
    )


async def demo_main(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Run the demo until ``stop``; a demo that cannot start prints one line and returns 3."""
    from gateway.demo.plots import PlotsUnavailable
    from gateway.demo.run import DemoOptions, run_demo

    if args.failure_after <= 0:
        print("pdm-gateway: --failure-after must be positive", file=sys.stderr)
        return 2
    opts = DemoOptions(
        duration_s=args.duration,
        state_dir=args.state_dir,
        failure_after_s=args.failure_after,
        plots_dir=args.plots,
        opcua=args.opcua,
        refresh_s=args.refresh,
    )
    try:
        return await run_demo(opts, stop, sys.stdout)
    except (FileNotFoundError, PlotsUnavailable) as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
