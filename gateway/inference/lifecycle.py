"""The model lifecycle in a running gateway: follows the registry, swaps models between batches,
runs shadow candidates, and rolls a newly promoted model back by itself.

``ModelController`` is a supervised stage beside the inference stage. Every
``models.watch_interval_s`` it (1) reloads when the registry state file was replaced (a
``pdm-gateway models promote/rollback`` from the command line, or its own changes): new
versions are loaded on a worker thread, then handed to ``InferenceStage.swap`` as one set; (2)
rolls back a promoted model on probation that failed, emitted NaN/inf, or alerted more than
``models.rollback.factor`` times the previous model over ``models.rollback.period_s``; (3)
rejects a shadow candidate that emitted NaN/inf (it is never promoted); (4) writes the score
summary (``stats.json``) that ``models list`` prints. A promoted model is on probation with the
previous one as its fallback: a batch the new model fails on is scored by the previous one, so
every frame keeps exactly one active score through a rollback.

Automatic rollbacks are logged at error level, counted (``status()["rollbacks"]``), and reported
as an ``AlertEvent`` (category ``"sensor"``, rule ``"model-rollback"``): kept in ``events``,
passed to ``on_event``, and put on the ``out`` queue (the records queue the store writes) when
one is bound. With ``models.updates`` set it also pulls new versions from the model repository
every ``models.updates.interval_s`` (``gateway.inference.updates``). The controller also serves
the OPC UA server's ``ModelRegistryHook`` (``promote(asset, version)``, ``rollback(asset)``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config.plant import Asset, Channel
from gateway.core.clock import Clock
from gateway.core.errors import ConfigError
from gateway.core.records import AlertEvent, AlertState, Severity
from gateway.dsp.config import DspConfig
from gateway.inference.check import check_model_features
from gateway.inference.config import ModelsConfig
from gateway.inference.manifest import Manifest
from gateway.inference.registry import ModelState, RefusedError, Registry, UnknownError
from gateway.inference.scorer import Scorer
from gateway.inference.stage import InferenceStage, ModelSet, open_model
from gateway.inference.updates import Puller
from gateway.runtime.queues import BoundedQueue

log = logging.getLogger(__name__)

#: checks a manifest against the configured channels and DSP: ``(key, reason)`` errors
FeatureCheck = Callable[[Manifest, str], list[tuple[str, str]]]


@dataclass
class Probation:
    """A newly promoted version, watched until ``since + period_s``."""

    version: str
    previous: Scorer
    since: float
    previous_rate: float | None
    start_counts: tuple[int, int, int]


class ModelController:
    name = "models"

    def __init__(
        self,
        cfg: ModelsConfig,
        state_dir: Path,
        stage: InferenceStage,
        clock: Clock,
        check: FeatureCheck | None = None,
        on_event: Callable[[AlertEvent], None] | None = None,
    ) -> None:
        self.cfg, self.state_dir, self.stage, self.clock = cfg, state_dir, stage, clock
        self.registry = Registry(cfg, state_dir)
        self.check = check
        self.on_event = on_event
        #: where rollback events go to be stored (bound by the pipeline when its store keeps
        #: AlertEvents); events reported before the first tick wait in ``_pending``
        self.out: BoundedQueue[AlertEvent] | None = None
        self._pending: list[AlertEvent] = []
        self.rollbacks = 0
        self.events: deque[AlertEvent] = deque(maxlen=100)
        self.probation: dict[str, Probation] = {}
        self._stamp = self.registry.stamp()
        self._lock = asyncio.Lock()
        # model id -> its scorers in use (taken from the stage's current set)
        ms = stage.proc.set
        self._active: dict[str, Scorer] = {}
        self._shadow: dict[str, Scorer] = {}
        for asset, mid in cfg.assets.items():
            if asset in ms.active:
                self._active[mid] = ms.active[asset]
            if asset in ms.shadow:
                self._shadow[mid] = ms.shadow[asset]
        self._last_stats: dict[str, object] | None = None
        #: set each time a new set of models is handed to the stage
        self.swapped = asyncio.Event()
        #: pulls updates from ``models.updates.repository`` every ``interval_s`` (when set)
        self.puller: Puller | None = None
        if cfg.updates is not None:
            self.puller = Puller(cfg, state_dir, self.registry, clock)

    # -- the stage -------------------------------------------------------------------------
    async def run(self) -> None:
        next_pull = self.clock.monotonic()
        while True:
            if self.puller is not None and self.clock.monotonic() >= next_pull:
                await self.puller.pull_once()  # what it installs, the next tick loads
                assert self.cfg.updates is not None
                next_pull = self.clock.monotonic() + self.cfg.updates.interval_s
            await self.tick()
            await self.clock.sleep(self.cfg.watch_interval_s)

    async def tick(self) -> None:
        """One round of the work described in the module docstring. The controller's own
        registry writes are picked up by the next round like any other (reloading is
        idempotent), so a concurrent change from the command line is never missed."""
        async with self._lock:
            stamp = self.registry.stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                await self._reload()
            await self._check_faults()
            await self._check_shadows()
            await self._check_probation()
            await self._write_stats()
            if self.out is not None:
                while self._pending:
                    await self.out.put(self._pending.pop(0))

    # -- loading ---------------------------------------------------------------------------
    async def _load(self, model_id: str, version: str | None) -> Scorer:
        loop = asyncio.get_running_loop()
        scorer = await loop.run_in_executor(
            None, open_model, self.registry, self.cfg, self.state_dir, model_id, version
        )
        if self.check is not None:
            errors = self.check(scorer.manifest, model_id)
            if errors:
                raise RefusedError("; ".join(f"{k}: {r}" for k, r in errors))
        return scorer

    async def _reload(self) -> None:
        """Bring the models in use in line with the registry state, then swap them in."""
        try:
            state = self.registry.read_state()
        except ConfigError as exc:
            log.error("model registry: %s; models unchanged", exc)
            return
        for mid in sorted(set(self.cfg.assets.values())):
            s = state.get(mid)
            if s is None or s.active is None:
                continue  # unmanaged: the directory loaded at start stays
            await self._follow_active(mid, s)
            await self._follow_shadow(mid, state.get(mid) or s)
        self._swap()

    async def _follow_active(self, mid: str, s: ModelState) -> None:
        assert s.active is not None
        current = self._active.get(mid)
        if current is not None and current.version == s.active:
            return
        try:
            scorer = await self._load(mid, s.active)
        except (ConfigError, ValueError) as exc:
            why = _why(exc)
            if current is None:
                log.error("model %s %s cannot be loaded: %s", mid, s.active, why)
                return
            await self._auto_rollback(mid, s.active, f"failed to load: {why}")
            return
        previous_loaded = current
        self._active[mid] = scorer
        self.probation.pop(mid, None)
        log.warning(
            "model %s: version %s active (was %s)",
            mid,
            s.active,
            previous_loaded.version if previous_loaded else "none",
        )
        if (
            self.cfg.rollback.enabled
            and previous_loaded is not None
            and s.history
            and s.history[-1] == previous_loaded.version
        ):
            prev = self._counts(mid, previous_loaded.version)
            self.probation[mid] = Probation(
                s.active,
                previous_loaded,
                self.clock.monotonic(),
                prev[1] / prev[0] if prev[0] else None,
                self._counts(mid, s.active),
            )

    async def _follow_shadow(self, mid: str, s: ModelState) -> None:
        current = self._shadow.get(mid)
        if s.shadow is None:
            if current is not None:
                log.info("model %s: shadow %s stopped", mid, current.version)
                del self._shadow[mid]
            return
        if current is not None and current.version == s.shadow:
            return
        try:
            self._shadow[mid] = await self._load(mid, s.shadow)
        except (ConfigError, ValueError) as exc:
            self._shadow.pop(mid, None)
            log.error("model %s: shadow %s cannot be loaded: %s", mid, s.shadow, _why(exc))
            await asyncio.to_thread(
                self.registry.reject, mid, s.shadow, f"failed to load: {_why(exc)}"
            )
            return
        log.warning("model %s: version %s runs in shadow", mid, s.shadow)

    def _swap(self) -> None:
        active, shadow, fallback = {}, {}, {}
        for asset, mid in self.cfg.assets.items():
            if mid in self._active:
                active[asset] = self._active[mid]
            if mid in self._shadow:
                shadow[asset] = self._shadow[mid]
            if mid in self.probation:
                fallback[asset] = self.probation[mid].previous
        self.stage.swap(ModelSet(active, shadow, fallback))
        self.swapped.set()

    # -- automatic rollback ----------------------------------------------------------------
    def _counts(self, mid: str, version: str, shadow: bool = False) -> tuple[int, int, int]:
        st = dict(self.stage.proc.stats).get((mid, version, shadow))
        return st.counts() if st is not None else (0, 0, 0)

    async def _check_faults(self) -> None:
        faults = self.stage.proc.faults
        for (mid, version), why in list(faults.items()):
            faults.pop((mid, version), None)
            active = self._active.get(mid)
            if active is not None and active.version == version and mid in self.probation:
                await self._auto_rollback(mid, version, why)

    async def _check_shadows(self) -> None:
        for mid, cand in list(self._shadow.items()):
            _, _, bad = self._counts(mid, cand.version, shadow=True)
            if bad:
                why = f"emitted {bad} non-finite score(s) in shadow"
                log.error("model %s: candidate %s %s; rejected", mid, cand.version, why)
                del self._shadow[mid]
                await asyncio.to_thread(self.registry.reject, mid, cand.version, why)
                self._swap()

    async def _check_probation(self) -> None:
        rb = self.cfg.rollback
        now = self.clock.monotonic()
        for mid, p in list(self.probation.items()):
            if now - p.since < rb.period_s:
                continue
            n, above, _ = self._counts(mid, p.version)
            n, above = n - p.start_counts[0], above - p.start_counts[1]
            if n < rb.min_frames:
                continue  # not enough evidence yet: stay on probation
            rate = above / n
            baseline = max(p.previous_rate or 0.0, rb.min_alert_rate)
            if rate > rb.factor * baseline:
                await self._auto_rollback(
                    mid,
                    p.version,
                    f"alert rate {rate:.2%} over {n} frames exceeds {rb.factor:g} x the "
                    f"previous version's {baseline:.2%}",
                )
            else:
                log.info(
                    "model %s %s passed probation (alert rate %.2f%%)", mid, p.version, 100 * rate
                )
                del self.probation[mid]
                self._swap()

    async def _auto_rollback(self, mid: str, version: str, why: str) -> None:
        """Roll ``mid`` back from ``version``: loudly logged, counted, reported."""
        try:
            back_to = await asyncio.to_thread(self.registry.rollback, mid, why)
        except (RefusedError, UnknownError) as exc:
            log.error("model %s %s: %s; cannot roll back: %s", mid, version, why, exc)
            return
        p = self.probation.pop(mid, None)
        if p is not None and p.previous.version == back_to:
            self._active[mid] = p.previous
        elif self._active.get(mid) is None or self._active[mid].version != back_to:
            try:
                self._active[mid] = await self._load(mid, back_to)
            except (ConfigError, ValueError) as exc:
                log.error("model %s: rollback target %s cannot be loaded: %s", mid, back_to, exc)
        log.error(
            "AUTOMATIC ROLLBACK: model %s %s rolled back to %s: %s", mid, version, back_to, why
        )
        self.report(mid, version, back_to, why)
        self._swap()

    def report(self, mid: str, version: str, back_to: str, why: str) -> None:
        """Count an automatic rollback and report it as an ``AlertEvent`` per asset."""
        self.rollbacks += 1
        msg = f"model {mid} {version} rolled back to {back_to}: {why}"
        for asset, m in self.cfg.assets.items():
            if m != mid:
                continue
            ts = self.clock.now_ns()
            ev = AlertEvent(
                f"model-rollback-{mid}-{version}-{ts}",
                asset,
                "model-rollback",
                AlertState.RAISED,
                Severity.WARNING,
                ts,
                msg,
                model_version=version,
                category="sensor",
            )
            self.events.append(ev)
            self._pending.append(ev)
            if self.on_event is not None:
                self.on_event(ev)

    # -- the OPC UA server's ModelRegistryHook ---------------------------------------------
    def _model_of(self, asset: str) -> str:
        if asset not in self.cfg.assets:
            raise UnknownError(f"asset {asset!r} has no model")
        return self.cfg.assets[asset]

    async def promote(self, asset: str, version: str) -> str:
        """Make ``version`` of the asset's model active; the version now active. ``KeyError``
        for an unknown asset/version, ``ValueError`` when refused (a rejected version, or one
        that emitted NaN/inf in shadow, or one that fails to load)."""
        mid = self._model_of(asset)
        _, _, bad = self._counts(mid, version, shadow=True)
        if bad:
            raise RefusedError(f"model {mid} {version} emitted non-finite scores in shadow")
        await asyncio.to_thread(self.registry.promote, mid, version)
        await self.tick()
        now = self._active[mid].version
        if now != version:
            raise RefusedError(f"model {mid} {version} was not taken: {self._last_reason(mid)}")
        return now

    async def rollback(self, asset: str) -> str:
        """Make the asset's model's previous version active again; the version now active."""
        mid = self._model_of(asset)
        await asyncio.to_thread(self.registry.rollback, mid)
        await self.tick()
        return self._active[mid].version

    def _last_reason(self, mid: str) -> str:
        s = self.registry.read_state().get(mid)
        return "; ".join(f"{v}: {r}" for v, r in s.rejected.items()) if s else "unknown"

    # -- reporting -------------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        """Per model id: active and shadow version, and per version and role the score
        summary (counts, alert rate, distribution) since the gateway started."""
        out: dict[str, dict[str, object]] = {}
        for mid in sorted(set(self.cfg.assets.values())):
            a, s = self._active.get(mid), self._shadow.get(mid)
            out[mid] = {
                "active": a.version if a else None,
                "shadow": s.version if s else None,
                "on_probation": mid in self.probation,
                "versions": {},
            }
        for (mid, version, shadow), st in dict(self.stage.proc.stats).items():
            if mid in out:
                versions = out[mid]["versions"]
                assert isinstance(versions, dict)
                versions.setdefault(version, {})["shadow" if shadow else "active"] = st.summary()
        return dict(out)

    async def _write_stats(self) -> None:
        stats = self.summary()
        if stats != self._last_stats:
            try:  # a file write: off the event loop
                await asyncio.to_thread(self.registry.write_stats, stats)
            except OSError as exc:
                log.warning("cannot write the model summary: %s", exc)
            self._last_stats = stats

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rollbacks": self.rollbacks,
            "last_rollback": self.events[-1].message if self.events else "",
            "models": self.summary(),
        }
        if self.puller is not None:
            out["updates"] = self.puller.status()
        return out


def feature_check(
    cfg: ModelsConfig, channels: dict[str, Channel], assets: dict[str, Asset], dsp: DspConfig
) -> FeatureCheck:
    """The start-up feature check for the assets a model id scores, for new versions."""

    def check(manifest: Manifest, model_id: str) -> list[tuple[str, str]]:
        scored = {a: assets[a] for a, m in cfg.assets.items() if m == model_id and a in assets}
        return check_model_features(manifest, channels, scored, dsp, f"models.{model_id}")

    return check


def _why(exc: Exception) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(f"{p}: {r}" if p else r for p, r in exc.errors)
    return str(exc)
