"""What the demo dashboard shows, gathered from the running pipeline and the simulated plant.

``Watch`` is an alert-stage publisher (it sees every evaluated batch of frames and scores and
the alert transitions) and a plant publisher (it keeps the last second of each machine's
vibration for the plots). It only copies values; it never blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.alerts.engine import AlertEngine
from gateway.core.records import AlertEvent, AlertState, FeatureFrame, Score, Severity
from simulators.machine import Machine, MachineSnapshot

#: the dashboard's trend: the highest score of each TREND_STEP_S seconds, the last TREND steps
TREND, TREND_STEP_S = 40, 1.0
#: vibration samples kept per machine for the plots
WAVE_SAMPLES = 1 << 14


@dataclass
class AssetView:
    """Latest values of one asset. Times are seconds since the watch started."""

    threshold: float = float("nan")
    score: float = float("nan")
    trend_steps: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=TREND))
    history: list[tuple[float, float]] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    temperature_c: float = float("nan")
    raised: int = 0  #: alerts raised on this asset so far
    wave: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    wave_rate_hz: float = 0.0
    shaft_hz: float = 0.0
    severity: float = 0.0  #: simulated fault severity (0 none, 1 failure): the ground truth
    machine_days: float = 0.0

    @property
    def trend(self) -> tuple[float, ...]:
        """Highest score of each of the last ``TREND`` steps, oldest first."""
        return tuple(v for _, v in self.trend_steps)

    def add_score(self, t_s: float, score: float) -> None:
        self.score = score
        self.history.append((t_s, score))
        step = int(t_s // TREND_STEP_S)
        if self.trend_steps and self.trend_steps[-1][0] == step:
            self.trend_steps[-1] = (step, max(self.trend_steps[-1][1], score))
        else:
            self.trend_steps.append((step, score))


@dataclass(frozen=True)
class ActiveAlert:
    asset: str
    rule: str
    severity: Severity
    since_s: float  #: raised this long ago
    acknowledged: bool


class Watch:
    def __init__(self, assets: Sequence[str], start_ns: int) -> None:
        self.assets = {a: AssetView() for a in assets}
        self.start_ns = start_ns
        self.engine: AlertEngine | None = None
        self.events: list[AlertEvent] = []
        self._order = list(assets)

    def _t(self, ts_ns: int) -> float:
        return (ts_ns - self.start_ns) / 1e9

    # -- alert-stage publisher ---------------------------------------------------------------
    async def publish(
        self,
        items: Sequence[FeatureFrame | Score],
        events: Sequence[AlertEvent],
        engine: AlertEngine,
    ) -> None:
        self.engine = engine
        for item in items:
            view = self.assets.get(item.asset)
            if view is None:
                continue
            if isinstance(item, Score):
                if item.shadow:
                    continue
                view.threshold = item.threshold
                view.add_score(self._t(item.ts_ns), item.score)
            elif item.channel.endswith("_temp"):
                view.temperature_c = item.as_dict().get("value", float("nan"))
            else:
                view.features = item.as_dict()
        for ev in events:
            self.events.append(ev)
            if ev.state is AlertState.RAISED and ev.asset in self.assets:
                self.assets[ev.asset].raised += 1

    def active(self, now_ns: int) -> list[ActiveAlert]:
        """Active alerts, most severe first."""
        if self.engine is None:
            return []
        out = [
            ActiveAlert(
                s.rule.asset,
                name,
                s.active.severity,
                (now_ns - s.active.raised_ns) / 1e9,
                s.active.acknowledged_ns is not None,
            )
            for name, s in self.engine.active()
            if s.active is not None
        ]
        return sorted(out, key=lambda a: (-int(a.severity), self._order.index(a.asset), a.rule))

    def health(self, asset: str) -> Severity | None:
        """The asset's worst active machine alert, None when it has none."""
        if self.engine is None:
            return None
        worst = self.engine.max_severity(asset)
        return Severity(worst) if worst else None

    # -- plant publisher -----------------------------------------------------------------------
    async def publish_machine(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        view = self.assets[self._order[index]]
        view.severity = max(snap.severity.values(), default=0.0)
        view.machine_days = snap.t_machine_s / 86_400.0
        view.shaft_hz = snap.shaft_hz
        for b in snap.blocks:
            if b.kind == "vibration" and b.channel == "vib0":
                view.wave = np.concatenate((view.wave, b.samples))[-WAVE_SAMPLES:]
                view.wave_rate_hz = b.sample_rate_hz


class PlantTap:
    """Adapter: the plant's publisher protocol onto ``Watch.publish_machine``."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        await self.watch.publish_machine(index, machine, snap)
