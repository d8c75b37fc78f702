"""``pdm-gateway models ...``: the command-line side of models (``calibrate`` here, the
registry commands in ``registry_cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.core.errors import ConfigError


def add_models_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = sub.add_parser("models", help="commission and manage anomaly models")
    msub = models.add_subparsers(dest="models_command", required=True)
    cal = msub.add_parser(
        "calibrate", help="fit a healthy baseline from recordings and write a .tflite model"
    )
    cal.add_argument(
        "--input",
        type=Path,
        action="append",
        default=[],
        help="a healthy recording (.npy, .csv, .wav); one per run of the machine; repeatable",
    )
    cal.add_argument("--sample-rate", type=float, default=None, help="Hz (with --input)")
    cal.add_argument(
        "--from-live",
        action="store_true",
        help="learn from the features the running gateway of --config has stored",
    )
    cal.add_argument(
        "--duration", type=float, default=None, help="seconds of stored features (--from-live)"
    )
    cal.add_argument("--config", type=Path, default=None, help="gateway config (channels, dsp)")
    cal.add_argument("--out", type=Path, required=True, help="model directory to write")
    cal.add_argument("--model-id", default="baseline")
    cal.add_argument("--version", default=None, help="default: the UTC time")
    cal.add_argument("--kind", choices=("vibration", "acoustic"), default="vibration")
    cal.add_argument("--unit", default="", help="default: g for vibration, Pa for acoustic")
    cal.add_argument(
        "--false-alarm-target", type=float, default=0.01, help="per window (default 0.01)"
    )
    cal.add_argument("--margin", type=float, default=1.5, help="threshold safety factor")
    cal.add_argument(
        "--max-frequency", type=float, default=None, help="Hz (default 0.4 x sample rate)"
    )
    cal.add_argument("--quantize", choices=("float32", "int8"), default="float32")
    from gateway.inference.registry_cli import add_registry_parsers

    add_registry_parsers(msub)


def _usage(msg: str) -> int:
    print(f"pdm-gateway models calibrate: {msg}", file=sys.stderr)
    return 2


def main_models(args: argparse.Namespace) -> int:
    if args.models_command != "calibrate":
        from gateway.inference.registry_cli import main_registry

        return main_registry(args)
    if args.from_live:
        if args.input or args.config is None or args.duration is None:
            return _usage("--from-live needs --config and --duration, and no --input")
        return _from_live(args)
    if not args.input or args.sample_rate is None:
        return _usage("give --input FILE (repeatable) and --sample-rate, or --from-live")
    from gateway.inference.calibrate import calibrate

    try:
        r = calibrate(
            args.input,
            args.sample_rate,
            args.out,
            config=args.config,
            kind=args.kind,
            unit=args.unit or ("g" if args.kind == "vibration" else "Pa"),
            model_id=args.model_id,
            version=args.version,
            target=args.false_alarm_target,
            margin=args.margin,
            max_frequency_hz=args.max_frequency,
            quantization=args.quantize,
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # one 'key.path: reason' line each
        return 2
    except ValueError as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return 2
    m = r.manifest
    c = m.calibration
    print(f"learned from {sum(r.windows)} windows ({', '.join(map(str, r.windows))} per input)")
    if r.dropped:
        print(f"skipped {r.dropped} windows with non-finite features")
    print(
        f"features: {len(m.features)} ({', '.join(m.features)}); PCA components: "
        f"{m.score.components}"
    )
    print(
        f"threshold {m.threshold:.4g}: held-out false-alarm rate "
        f"{c.estimated_false_alarm_rate:.3%} "
        f"(target {c.target_false_alarm_rate:.3%}) over {c.holdout_segments} held-out segments, "
        f"safety margin x{c.margin}"
    )
    print(f"gateway dsp settings for this model: bands_hz = {m.dsp.bands_hz}")
    print(
        f"wrote {args.out / m.file} and manifest.json ({m.model_id} {m.version}, {m.quantization})"
    )
    return 0


def _from_live(args: argparse.Namespace) -> int:
    from gateway.config.loader import load_config
    from gateway.inference.live import calibrate_from_live

    try:
        r = calibrate_from_live(
            load_config(args.config),
            args.out,
            args.duration,
            kind=args.kind,
            model_id=args.model_id,
            version=args.version,
            target=args.false_alarm_target,
            margin=args.margin,
            max_frequency_hz=args.max_frequency,
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # one 'key.path: reason' line each
        return 2
    except ValueError as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return 2
    m, c = r.manifest, r.manifest.calibration
    print(
        f"learned from {r.windows} windows ({r.span_s:g} s of {', '.join(r.channels)} "
        "from the gateway's store)"
    )
    print(
        f"threshold {m.threshold:.4g}: held-out false-alarm rate "
        f"{c.estimated_false_alarm_rate:.3%} (target {c.target_false_alarm_rate:.3%}) over "
        f"{c.holdout_segments} held-out time segments, safety margin x{c.margin}"
    )
    print(f"wrote {args.out / m.file} and manifest.json ({m.model_id} {m.version})")
    return 0
