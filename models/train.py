"""Train, export and evaluate the shipped anomaly models on simulator data (``make models``).

For each simulated machine class the healthy baseline is learned from healthy runs of the machine
simulator (several seeds, loads and slightly different speeds, all three vibration channels),
with the same numpy fit and flatbuffer export that ``pdm-gateway models calibrate`` uses on site:
``models/<class>/`` (float32) and ``models/<class>-int8/`` (full int8, LiteRT's post-training
calibration). No TensorFlow is needed.

The evaluation, written to ``models/EVALUATION.md`` and ``models/evaluation.json``, scores
- run-to-failure scenarios of the class (``simulators/scenarios``) in accelerated machine time:
  whether an alarm (``PERSIST_N`` of the last ``PERSIST_M`` windows of a channel above the
  threshold) comes before the simulated failure, and how long before it;
- healthy runs of other seeds, loads and speeds: false alarm events, extrapolated per
  machine-day at the live window rate;
- int8 against float32: score correlation and alarm agreement on the same windows.

Usage: ``python models/train.py [--out models] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config.plant import Asset, Channel  # noqa: E402
from gateway.core.records import SampleBlock  # noqa: E402
from gateway.dsp.config import DspConfig  # noqa: E402
from gateway.dsp.stage import DspProcessor  # noqa: E402
from gateway.inference.calibrate import export_baseline  # noqa: E402
from gateway.inference.features import calibration_dsp, model_features, requirements  # noqa: E402
from gateway.inference.scorer import load_scorer  # noqa: E402
from simulators.machine import Machine  # noqa: E402
from simulators.scenario import DAY_S, load_scenario  # noqa: E402

FS = 25_600.0
MAX_FREQUENCY_HZ = 5_000.0  # the models work on any input sampled above 10 kHz
DSP = DspConfig(window=4096, hop=2048, envelope_band_hz=(2000.0, 4000.0))
STEP_S = 0.5  # real seconds per simulator step
PERSIST_N, PERSIST_M = 3, 5
VERSION = "1.0.0"


@dataclass(frozen=True)
class MachineClass:
    name: str
    description: str
    shaft_hz: float
    scenarios: tuple[str, ...]


CLASSES = (
    MachineClass(
        "motor-pump",
        "motor-driven pump, 24.75 Hz shaft, 6205 bearings",
        24.75,
        ("outer-race", "inner-race", "ball", "misalignment"),
    ),
    MachineClass("fan", "belt-driven fan, 16.5 Hz shaft", 16.5, ("imbalance",)),
)


def features(
    machine: Machine, seconds: float, dsp: DspConfig
) -> tuple[tuple[str, ...], list[np.ndarray], list[np.ndarray]]:
    """Features of every window of every vibration channel: names, then per channel the rows
    (n, F) and the machine time (s) at the end of each window."""
    chans = {c[0]: c for c in machine.channels if c[1] == "vibration"}
    ch_cfg = {c: Channel(kind="vibration", sample_rate_hz=FS) for c in chans}
    proc = DspProcessor(dsp, ch_cfg, {"m": Asset(channels=list(chans))}, now_ns=lambda: 0)
    rows: dict[str, list[np.ndarray]] = {c: [] for c in chans}
    ends: dict[str, list[float]] = {c: [] for c in chans}
    names: tuple[str, ...] = ()
    for t in np.arange(STEP_S, seconds + STEP_S / 2, STEP_S):
        snap = machine.advance(float(t))
        blocks = [
            SampleBlock(b.channel, round(b.first_index / FS * 1e9), 0, FS, b.samples, b.first_index)
            for b in snap.blocks
            if b.channel in chans
        ]
        for f in proc.process(list(blocks)):
            names = f.names
            rows[f.channel].append(np.asarray(f.values))
            ends[f.channel].append(machine.machine_time(f.end_ts_ns / 1e9))
    return (
        names,
        [np.stack(rows[c]) for c in chans],
        [np.array(ends[c]) for c in chans],
    )


def alarm_times(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices where the persistence rule starts to hold (rising edges)."""
    above = (scores > threshold).astype(int)
    win = np.convolve(above, np.ones(PERSIST_M, dtype=int))[: len(above)]
    on = win >= PERSIST_N
    return np.flatnonzero(on & ~np.concatenate(([False], on[:-1])))


def healthy_machine(cls: MachineClass, seed: int, load: float, speed_scale: float) -> Machine:
    sc = load_scenario("healthy")
    return sc.machines(
        1, seed=seed, load=load, shaft_hz=cls.shaft_hz * speed_scale, acoustic_rate_hz=0.0
    )[0]


def train_class(cls: MachineClass, out: Path, quick: bool) -> dict[str, object]:
    dsp, top = calibration_dsp(DSP, FS, MAX_FREQUENCY_HZ)
    runs = 4 if quick else 8
    seconds = 20.0 if quick else 40.0
    parts: list[np.ndarray] = []
    chosen: list[str] = []
    idx: list[int] = []
    for i in range(runs):
        m = healthy_machine(
            cls,
            seed=1000 + i,
            load=0.5 + 0.4 * i / max(1, runs - 1),
            speed_scale=1 + 0.02 * ((i % 3) - 1),
        )
        names, rows, _ = features(m, seconds, dsp)
        if not chosen:
            chosen = model_features(names, envelope_fixed=True)
            idx = [names.index(c) for c in chosen]
        parts.append(np.concatenate([r[:, idx] for r in rows]))  # one run = one segment
    exported = export_baseline(
        parts,
        chosen,
        out / cls.name,
        dsp=requirements(dsp, FS, top),
        kind="vibration",
        model_id=cls.name,
        version=VERSION,
        description=f"healthy baseline of a simulated {cls.description}",
        target=0.01,
        margin=1.5,
        sample_rates=[FS],
        quantizations=("float32", "int8"),
        min_segments=runs,
    )
    f32 = load_scorer(out / cls.name)
    i8 = load_scorer(out / f"{cls.name}-int8")
    thr = f32.threshold
    report: dict[str, object] = {
        "model_id": cls.name,
        "version": VERSION,
        "features": chosen,
        "threshold": thr,
        "training": {
            "runs": runs,
            "seconds_per_run": seconds,
            "windows": int(sum(p.shape[0] for p in parts)),
        },
        "calibration": exported.manifests["float32"].calibration.model_dump(),
    }
    # run-to-failure scenarios, accelerated so that failure comes after ~``rt`` real seconds
    rt = 40.0 if quick else 90.0
    faults = []
    all_f32: list[np.ndarray] = []
    all_i8: list[np.ndarray] = []
    for name in cls.scenarios:
        sc = load_scenario(name)
        f = sc.faults[0].to_fault()
        speed = f.failure_s / rt
        for seed in (1, 2) if quick else (1, 2, 3):
            m = sc.machines(
                1,
                seed=seed,
                speed=speed,
                acoustic_rate_hz=0.0,
                **({"shaft_hz": cls.shaft_hz} if sc.machine.shaft_hz is None else {}),
            )[0]
            names, rows, ends = features(m, rt, dsp)
            det = []
            for r, t in zip(rows, ends, strict=True):
                s = f32.score(r[:, idx])
                s8 = i8.score(r[:, idx])
                all_f32.append(s)
                all_i8.append(s8)
                edges = alarm_times(s, thr)
                early = [e for e in edges if t[e] < f.onset_s]
                later = [e for e in edges if t[e] >= f.onset_s]
                det.append((t[later[0]] if later else math.inf, len(early)))
            first = min(d[0] for d in det)
            faults.append(
                {
                    "scenario": name,
                    "seed": seed,
                    "onset_days": f.onset_s / DAY_S,
                    "failure_days": f.failure_s / DAY_S,
                    "detected_before_failure": bool(first < f.failure_s),
                    "detected_at_days": None if math.isinf(first) else first / DAY_S,
                    "lead_time_days": None if math.isinf(first) else (f.failure_s - first) / DAY_S,
                    "alarms_before_onset": int(sum(d[1] for d in det)),
                }
            )
    report["run_to_failure"] = faults
    # healthy runs never seen in training: other seeds, loads, speeds
    h_runs = 4 if quick else 10
    h_seconds = 30.0 if quick else 60.0
    windows = alarms = above = 0
    for i in range(h_runs):
        m = healthy_machine(
            cls,
            seed=5000 + i,
            load=0.45 + 0.5 * i / max(1, h_runs - 1),
            speed_scale=1 + 0.03 * ((i % 5) - 2) / 2,
        )
        _, rows, _ = features(m, h_seconds, dsp)
        for r in rows:
            s = f32.score(r[:, idx])
            all_f32.append(s)
            all_i8.append(i8.score(r[:, idx]))
            windows += len(s)
            above += int((s > thr).sum())
            alarms += len(alarm_times(s, thr))
    per_day = 86_400.0 * FS / DSP.hop  # windows per channel per day at the live rate
    report["healthy"] = {
        "runs": h_runs,
        "seconds_per_run": h_seconds,
        "windows": windows,
        "window_false_alarm_rate": above / windows,
        "alarm_events": alarms,
        "alarms_per_machine_day_per_channel": alarms / windows * per_day,
        "alarms_per_machine_day_upper_95": (
            max(alarms, 3.0) if alarms == 0 else alarms + 2 * math.sqrt(alarms)
        )
        / windows
        * per_day,
    }
    a, b = np.concatenate(all_f32), np.concatenate(all_i8)
    sat = i8.manifest.score.saturates_at or math.inf
    inside = a < sat
    report["int8_vs_float32"] = {
        "windows": int(a.size),
        "int8_saturates_at": sat,
        "windows_above_int8_range": int((~inside).sum()),
        "score_correlation_clipped": float(np.corrcoef(np.minimum(a, sat), b)[0, 1]),
        "score_correlation_within_range": float(np.corrcoef(a[inside], b[inside])[0, 1]),
        "score_correlation_raw": float(np.corrcoef(a, b)[0, 1]),
        "alarm_decision_agreement": float(np.mean((a > thr) == (b > i8.threshold))),
    }
    return report


def markdown(reports: list[dict[str, object]], seconds: float) -> str:
    lines = [
        "# Shipped models: evaluation on simulated machines",
        "",
        "Written by `models/train.py` (`make models`); every figure comes from the machine",
        "simulator (`simulators/`), never from a real machine. Alarms need "
        f"{PERSIST_N} of the last {PERSIST_M} windows above the threshold. Run-to-failure "
        "scenarios run in accelerated machine time (the whole degradation in about a minute and "
        "a half of signal). Features: fixed bands in Hz up to "
        f"{MAX_FREQUENCY_HZ:.0f} Hz, velocity and displacement, envelope in 2-4 kHz; the gateway "
        "must configure the same `dsp.bands_hz` and `dsp.envelope_band_hz` (the manifest lists "
        "them; a mismatch is refused at start-up).",
        "",
    ]
    for r in reports:
        h = r["healthy"]
        q = r["int8_vs_float32"]
        assert isinstance(h, dict)
        assert isinstance(q, dict)
        lines += [
            f"## {r['model_id']} {r['version']}",
            "",
            f"Threshold {r['threshold']:.3f} (score about 1 on healthy data).",
            "",
            "| scenario | seed | onset (day) | failure (day) | alarm (day) | lead time (days) "
            "| alarms before onset |",
            "|---|---|---|---|---|---|---|",
        ]
        faults = r["run_to_failure"]
        assert isinstance(faults, list)
        for f in faults:
            at = "-" if f["detected_at_days"] is None else f"{f['detected_at_days']:.1f}"
            lead = "missed" if f["lead_time_days"] is None else f"{f['lead_time_days']:.1f}"
            lines.append(
                f"| {f['scenario']} | {f['seed']} | {f['onset_days']:.0f} "
                f"| {f['failure_days']:.0f} | {at} | {lead} | {f['alarms_before_onset']} |"
            )
        rate = sum(f["detected_before_failure"] for f in faults) / len(faults)
        lines += [
            "",
            f"Detection rate before failure: {rate:.0%} of {len(faults)} runs.",
            "",
            f"Healthy runs never seen in training ({h['runs']} runs x "
            f"{h['seconds_per_run']:.0f} s, "
            f"{h['windows']} windows): {h['window_false_alarm_rate']:.3%} of windows above the "
            f"threshold, {h['alarm_events']} alarm events, i.e. "
            f"{h['alarms_per_machine_day_per_channel']:.1f} false alarms per machine-day per "
            f"channel at the live rate of {FS / DSP.hop:.1f} windows/s "
            f"(95 % upper bound {h['alarms_per_machine_day_upper_95']:.0f}; these runs are far "
            "shorter than a day, so the bound is loose).",
            "",
            f"int8 against float32 on {q['windows']} windows: the int8 model resolves scores up "
            f"to {q['int8_saturates_at']:.1f} ({q['windows_above_int8_range']} windows of late "
            "faults lie above and read as that value); score correlation "
            f"{q['score_correlation_clipped']:.4f} with the float score clipped to that range, "
            f"{q['score_correlation_within_range']:.4f} on the windows within it, "
            f"{q['score_correlation_raw']:.4f} unclipped; same alarm decision on "
            f"{q['alarm_decision_agreement']:.2%} of windows.",
            "",
        ]
    lines.append(f"Generated in {seconds:.0f} s.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=ROOT / "models")
    p.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    args = p.parse_args()
    t0 = time.monotonic()
    reports = []
    for cls in CLASSES:
        print(f"training {cls.name}...", flush=True)
        reports.append(train_class(cls, args.out, args.quick))
    (args.out / "evaluation.json").write_text(json.dumps(reports, indent=2) + "\n")
    (args.out / "EVALUATION.md").write_text(markdown(reports, time.monotonic() - t0))
    print((args.out / "EVALUATION.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
