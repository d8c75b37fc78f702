"""PNG plots of a demo run (``pdm-gateway demo --plots DIR``): the last vibration second's
spectrum, its envelope spectrum with the bearing defect frequencies marked, and each asset's
anomaly score over time against its model threshold with the alerts raised.

Needs matplotlib (the ``plots`` extra); ``require_matplotlib`` says so in one line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

from gateway.config.schema import GatewayConfig
from gateway.core.records import AlertState
from gateway.demo.watch import Watch
from gateway.dsp.bearing import defect_orders

F64 = npt.NDArray[np.float64]
FILES = ("spectrum.png", "envelope-spectrum.png", "score.png")


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotsUnavailable(
            "--plots needs matplotlib: pip install 'pdm-gateway[plots]' (or pip install matplotlib)"
        )


def amplitude_spectrum(x: npt.NDArray[np.floating], fs: float) -> tuple[F64, F64]:
    """Hann-windowed single-sided amplitude spectrum (peak units of ``x``): ``(freqs Hz, amp)``."""
    w = np.hanning(len(x))
    amp = 2.0 * np.abs(np.fft.rfft((x - np.mean(x)) * w)) / np.sum(w)
    freqs = np.asarray(np.fft.rfftfreq(len(x), 1.0 / fs), dtype=np.float64)
    return freqs, np.asarray(amp, dtype=np.float64)


def envelope_spectrum(
    x: npt.NDArray[np.floating], fs: float, band: tuple[float, float]
) -> tuple[F64, F64]:
    """Amplitude spectrum of the envelope of ``x`` band-passed to ``band`` Hz."""
    sos = signal.butter(4, band, btype="bandpass", fs=fs, output="sos")
    env = np.abs(signal.hilbert(signal.sosfiltfilt(sos, x)))
    return amplitude_spectrum(env, fs)


def write_plots(out: Path, cfg: GatewayConfig, watch: Watch) -> list[Path]:
    """Write ``FILES`` into ``out`` (created); returns their paths."""
    require_matplotlib()
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    assets = list(cfg.assets)
    band = cfg.dsp.envelope_band_hz or (2000.0, 4000.0)
    top = max(hi for _, hi in cfg.dsp.bands_hz or [(0.0, 5000.0)])

    spec = Figure(figsize=(10, 2.6 * len(assets)), layout="constrained")
    envf = Figure(figsize=(10, 2.6 * len(assets)), layout="constrained")
    for i, asset in enumerate(assets):
        v, a = watch.assets[asset], cfg.assets[asset]
        ax = spec.add_subplot(len(assets), 1, i + 1)
        ex = envf.add_subplot(len(assets), 1, i + 1)
        if len(v.wave) < 256 or v.wave_rate_hz <= 0:
            ax.set_title(f"{asset}: no waveform")
            ex.set_title(f"{asset}: no waveform")
            continue
        f, amp = amplitude_spectrum(v.wave, v.wave_rate_hz)
        keep = f <= top
        ax.semilogy(f[keep], amp[keep], lw=0.6)
        ax.set(title=f"{asset}: spectrum", xlabel="Hz", ylabel="g peak")
        fe, ea = envelope_spectrum(v.wave, v.wave_rate_hz, band)
        keep = (fe > 0) & (fe <= 500)
        ex.plot(fe[keep], ea[keep], lw=0.8)
        ex.set(
            title=f"{asset}: envelope spectrum ({band[0]:.0f}-{band[1]:.0f} Hz band)",
            xlabel="Hz",
            ylabel="g peak",
        )
        if a.bearing is not None:
            b = a.bearing
            orders = defect_orders(
                b.balls, b.ball_diameter_mm, b.pitch_diameter_mm, b.contact_angle_deg
            )
            shaft = v.shaft_hz or a.shaft_speed_hz or 0.0
            colours = {"bpfo": "red", "bpfi": "purple", "bsf": "green", "ftf": "grey"}
            for key, colour in colours.items():
                for k in (1, 2, 3) if key == "bpfo" else (1,):
                    fk = k * orders[key] * shaft
                    if 0 < fk <= 500:
                        ex.axvline(fk, color=colour, ls="--", lw=0.8, label=key if k == 1 else None)
            ex.legend(loc="upper right", fontsize="small")
    sc = Figure(figsize=(10, 2.4 * len(assets)), layout="constrained")
    for i, asset in enumerate(assets):
        v = watch.assets[asset]
        ax = sc.add_subplot(len(assets), 1, i + 1)
        if v.history:
            t, s = zip(*v.history, strict=True)
            ax.semilogy(t, np.maximum(s, 1e-3), lw=0.8, label="score")
        ax.axhline(v.threshold, color="red", ls="--", lw=1, label="threshold")
        for ev in watch.events:
            if ev.asset == asset and ev.state is AlertState.RAISED:
                ax.axvline((ev.ts_ns - watch.start_ns) / 1e9, color="orange", lw=0.8)
        ax.set(title=f"{asset}: anomaly score (orange: alert raised)", xlabel="s", ylabel="score")
        ax.legend(loc="upper left", fontsize="small")
    paths = [out / name for name in FILES]
    for fig, p in zip((spec, envf, sc), paths, strict=True):
        fig.savefig(p, dpi=100)
    return paths
