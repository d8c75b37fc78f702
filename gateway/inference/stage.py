"""The inference stage: feature frames in, the same frames plus their scores out.

Each frame of an asset that has a model, whose channel carries the model's features, is scored;
the stage forwards every frame, each followed by its ``Score`` (model id and version, channel,
threshold). Frames whose model features are not finite (a missing speed, a Bad window) or whose
quality is Bad are forwarded unscored and counted; so are frames the model fails on or scores
as NaN/inf (counted apart, logged once per change between failing and working). A batch of
frames is scored on the stage's own worker thread (one interpreter call per model per batch),
so the event loop never runs the model. Drains its input on close, then returns.

The models in use are one ``ModelSet`` (active, shadow and fallback scorer per asset), replaced
as a whole by ``InferenceStage.swap`` from the event loop; a batch reads the set once when it
starts, so a swap takes effect between batches: every frame is scored by exactly one active
model. A shadow model scores the same frames beside the active one (its ``Score`` has
``shadow=True``). A fallback (the previously active model while a new one is on probation)
scores a batch the active model fails on or scores as NaN/inf, and the failure is reported in
``faults`` for the lifecycle controller to roll back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.config.plant import Asset, Channel
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame, Quality, Score
from gateway.dsp.config import DspConfig
from gateway.inference.check import check_model_features
from gateway.inference.config import ModelsConfig
from gateway.inference.crypto import read_key
from gateway.inference.registry import Registry
from gateway.inference.runtime import ModelRunner
from gateway.inference.scorer import Scorer, load_scorer
from gateway.runtime.offload import run_batches
from gateway.runtime.queues import BoundedQueue

log = logging.getLogger(__name__)
BATCH = 64


def open_model(
    registry: Registry, cfg: ModelsConfig, state_dir: Path, model_id: str, version: str | None
) -> Scorer:
    """The scorer of ``model_id``: ``version`` from the registry, or the unmanaged directory
    when ``version`` is None (``ConfigError``/``RefusedError``/``ValueError`` when it cannot
    be loaded)."""
    if version is None:
        return load_scorer(cfg.model_dir(state_dir, model_id), cfg.threads, cfg.batch)
    manifest, content = registry.load(model_id, version)
    return Scorer(manifest, ModelRunner(content, cfg.threads, cfg.batch))


def active_version(registry: Registry, model_id: str) -> str | None:
    """The registry's active version of ``model_id`` (None: not installed, unmanaged)."""
    s = registry.read_state().get(model_id)
    return s.active if s is not None else None


def _open_active(
    registry: Registry,
    cfg: ModelsConfig,
    state_dir: Path,
    model_id: str,
    rollbacks: list[tuple[str, str, str, str]] | None,
) -> Scorer:
    version = active_version(registry, model_id)
    try:
        return open_model(registry, cfg, state_dir, model_id, version)
    except (ConfigError, ValueError) as exc:
        s = registry.read_state().get(model_id)
        if rollbacks is None or version is None or s is None or not s.history:
            raise
        why = "; ".join(r for _, r in exc.errors) if isinstance(exc, ConfigError) else str(exc)
        why = f"failed to load: {why}"
        back = registry.rollback(model_id, reason=why)
        log.error(
            "AUTOMATIC ROLLBACK: model %s %s rolled back to %s: %s", model_id, version, back, why
        )
        rollbacks.append((model_id, version, back, why))
        return open_model(registry, cfg, state_dir, model_id, back)


def load_models(
    cfg: ModelsConfig,
    state_dir: Path,
    channels: dict[str, Channel],
    assets: dict[str, Asset],
    dsp: DspConfig,
    rollbacks: list[tuple[str, str, str, str]] | None = None,
) -> dict[str, Scorer]:
    """The model of each asset in ``cfg.assets`` (the registry's active version, else the
    unmanaged directory), loaded and checked against the configured features; one
    ``ConfigError`` listing every problem (``models.assets.<asset>``). With ``rollbacks`` (a
    starting gateway; None for a read-only check), an active registry version that cannot be
    loaded is rolled back to the previous one, and ``(model id, version, now active, why)``
    appended."""
    errors: list[tuple[str, str]] = []
    out: dict[str, Scorer] = {}
    loaded: dict[str, Scorer] = {}
    registry = Registry(cfg, state_dir)
    try:
        registry.trusted()
    except ConfigError as exc:
        errors += exc.errors
    try:
        if cfg.encryption_key is not None:
            read_key(state_dir / cfg.encryption_key)
    except ConfigError as exc:
        errors += exc.errors
    for asset, model_id in cfg.assets.items():
        key = f"models.assets.{asset}"
        if asset not in assets:
            continue  # reported by cross_check
        try:
            scorer = loaded.get(model_id) or _open_active(
                registry, cfg, state_dir, model_id, rollbacks
            )
        except ConfigError as exc:
            errors += [(key, f"{p}: {r}" if p else r) for p, r in exc.errors]
            continue
        except ValueError as exc:
            errors.append((key, f"model {model_id!r}: {exc}"))
            continue
        if model_id not in loaded and active_version(registry, model_id) is None:
            log.warning(
                "model %s is loaded from the unmanaged directory %s (sha256 checked, no "
                "signature check); `pdm-gateway models install` puts it under signature control",
                model_id,
                cfg.model_dir(state_dir, model_id),
            )
        loaded[model_id] = scorer
        errors += check_model_features(scorer.manifest, channels, {asset: assets[asset]}, dsp, key)
        out[asset] = scorer
    if errors:
        raise ConfigError(errors)
    return out


@dataclass(frozen=True)
class ModelSet:
    """The scorers in use, per asset (``shadow``/``fallback`` only for some assets)."""

    active: dict[str, Scorer]
    shadow: dict[str, Scorer] = field(default_factory=dict)
    fallback: dict[str, Scorer] = field(default_factory=dict)


RECENT = 4096  # scores kept per model version for the distribution summary


class VersionStats:
    """Scores of one model version in one role since the gateway started (thread-safe)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.n = 0
        self.above = 0
        self.invalid = 0
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def add(self, values: npt.NDArray[np.float64], invalid: int) -> None:
        """Record finite scores ``values`` and a count of non-finite ones."""
        above = int(np.count_nonzero(values > self.threshold))
        with self._lock:
            self.n += len(values)
            self.above += above
            self.invalid += invalid
            self._recent.extend(values.tolist())

    def counts(self) -> tuple[int, int, int]:
        """``(scored, above threshold, non-finite)``."""
        with self._lock:
            return self.n, self.above, self.invalid

    def summary(self) -> dict[str, float | int]:
        """Counts, alert rate, and the distribution of the last ``RECENT`` scores."""
        with self._lock:
            recent = np.array(self._recent, dtype=np.float64)
            out: dict[str, float | int] = {
                "scored": self.n,
                "above_threshold": self.above,
                "alert_rate": self.above / self.n if self.n else 0.0,
                "non_finite": self.invalid,
                "threshold": self.threshold,
            }
        if recent.size:
            p50, p95, p99 = np.percentile(recent, [50, 95, 99]).tolist()
            out |= {
                "mean": float(recent.mean()),
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "max": float(recent.max()),
            }
        return out


class InferenceProcessor:
    """The pure part: scores a batch of frames (no asyncio)."""

    def __init__(self, models: dict[str, Scorer] | ModelSet) -> None:
        self.set = models if isinstance(models, ModelSet) else ModelSet(dict(models))
        self.scored = 0
        self.unscored = 0
        #: scores the model returned as NaN or infinite (not emitted), and failed model calls
        self.invalid = 0
        self.errors = 0
        #: seconds spent inside model calls, and the frames they scored (mean latency per frame)
        self.infer_seconds = 0.0
        self.infer_frames = 0
        self._failing: set[str] = set()  # model ids whose last batch failed or was invalid
        #: (model id, version, shadow) -> its scores
        self.stats: dict[tuple[str, str, bool], VersionStats] = {}
        #: (model id, version) of active models that failed while a fallback stood by -> why
        self.faults: dict[tuple[str, str], str] = {}

    @property
    def models(self) -> dict[str, Scorer]:
        return self.set.active

    def _stats(self, scorer: Scorer, shadow: bool) -> VersionStats:
        key = (scorer.model_id, scorer.version, shadow)
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = VersionStats(scorer.threshold)
        return st

    def _state(self, model_id: str, bad: bool, why: str) -> None:
        """Log a model's state changes once (failing <-> working again)."""
        if bad and model_id not in self._failing:
            self._failing.add(model_id)
            log.error("model %s: %s; its frames are forwarded unscored", model_id, why)
        elif not bad and model_id in self._failing:
            self._failing.discard(model_id)
            log.info("model %s scores again", model_id)

    def _run(self, scorer: Scorer, x: np.ndarray, shadow: bool) -> tuple[np.ndarray, str]:
        """Scores of ``x`` (NaN where not finite) and why they are bad ("" when all finite)."""
        t0 = time.perf_counter()
        try:
            values = scorer.score(x)
        except (RuntimeError, ValueError) as exc:
            if not shadow:
                self.errors += 1
            self._stats(scorer, shadow).add(np.empty(0), len(x))
            return np.full(len(x), np.nan), f"inference failed ({exc})"
        if not shadow:
            self.infer_seconds += time.perf_counter() - t0
            self.infer_frames += len(x)
        finite = np.isfinite(values)
        good = values if finite.all() else values[finite]
        self._stats(scorer, shadow).add(good, len(values) - len(good))
        return values, "" if len(good) == len(values) else "the model returned non-finite scores"

    def process(self, frames: list[FeatureFrame]) -> list[FeatureFrame | Score]:
        """The frames in order, each followed by its score (and its shadow score) when it has
        one."""
        ms = self.set  # read once: a swap applies from the next batch
        models = ms.active
        # one interpreter call per group: the assets that share their scorers (active, fallback
        # and shadow), with one feature layout (frames of a channel share their names tuple)
        groups: dict[tuple[int, int, int, tuple[str, ...]], list[int]] = {}
        for i, f in enumerate(frames):
            scorer = models.get(f.asset)
            if scorer is not None:
                fb, sh = ms.fallback.get(f.asset), ms.shadow.get(f.asset)
                key = (id(scorer), id(fb), id(sh), f.names)
                where = groups.get(key)
                if where is None:
                    groups[key] = [i]
                else:
                    where.append(i)
        scores: dict[int, list[Score]] = {}
        for (*_, names), where in groups.items():
            asset = frames[where[0]].asset
            scorer = models[asset]
            idx = scorer.columns(names)
            if idx is None:
                continue  # another kind of channel (a scalar, a microphone for a vibration model)
            raw = np.concatenate([frames[i].values for i in where]).reshape(len(where), -1)
            x = raw[:, idx]
            ok = np.isfinite(x).all(axis=1)
            ok &= np.array([frames[i].quality != Quality.BAD for i in where])
            if not ok.all():
                self.unscored += int((~ok).sum())
                where = [i for i, good in zip(where, ok.tolist(), strict=True) if good]
                x, raw = x[ok], raw[ok]
            if not where:
                continue
            values, why = self._run(scorer, x, False)
            fallback = ms.fallback.get(asset)
            if why and fallback is not None and fallback.columns(names) is not None:
                self.faults[(scorer.model_id, scorer.version)] = why
                log.error(
                    "model %s %s: %s; the batch is scored by %s instead",
                    scorer.model_id,
                    scorer.version,
                    why,
                    fallback.version,
                )
                scorer = fallback
                fidx = fallback.columns(names)
                assert fidx is not None
                values, why = self._run(fallback, raw[:, fidx], False)
            finite = np.isfinite(values)
            if not finite.all():
                self.invalid += int((~finite).sum())
                self.unscored += int((~finite).sum())
                if why.startswith("inference failed"):
                    self.invalid -= len(where)
            self._state(scorer.model_id, bool(why), why)
            mid, ver, thr = scorer.model_id, scorer.version, scorer.threshold
            for i, v, good in zip(where, values.tolist(), finite.tolist(), strict=True):
                if good:
                    f = frames[i]
                    scores[i] = [Score(f.asset, f.end_ts_ns, mid, ver, v, thr, channel=f.channel)]
            cand = ms.shadow.get(asset)
            sidx = cand.columns(names) if cand is not None else None
            if cand is None or sidx is None:
                continue
            svals, _ = self._run(cand, raw[:, sidx], True)
            smid, sver, sthr = cand.model_id, cand.version, cand.threshold
            for i, v in zip(where, svals.tolist(), strict=True):
                if i in scores and np.isfinite(v):
                    f = frames[i]
                    scores[i].append(
                        Score(f.asset, f.end_ts_ns, smid, sver, v, sthr, True, f.channel)
                    )
        self.scored += len(scores)
        if not scores:
            return list(frames)
        out: list[FeatureFrame | Score] = []
        for i, f in enumerate(frames):
            out.append(f)
            out.extend(scores.get(i, ()))
        return out


class InferenceStage:
    name = "inference"

    def __init__(
        self,
        models: dict[str, Scorer] | ModelSet,
        inp: BoundedQueue[FeatureFrame],
        out: BoundedQueue[FeatureFrame | Score],
        batch: int = BATCH,
    ) -> None:
        self.proc = InferenceProcessor(models)
        self.inp, self.out, self.batch = inp, out, batch
        #: batches scored so far (a swap applies from the next one)
        self.batches = 0
        self.batch_done = asyncio.Event()

    def swap(self, models: ModelSet) -> None:
        """Use ``models`` from the next batch on (call from the event loop)."""
        self.proc.set = models

    def status(self) -> dict[str, object]:
        p = self.proc
        return {
            "models": {a: _slot_status(p.set, a) for a in p.models},
            "latency_s": p.infer_seconds / p.infer_frames if p.infer_frames else 0.0,
            "scored": self.proc.scored,
            "unscored": self.proc.unscored,
            "invalid_scores": self.proc.invalid,
            "errors": self.proc.errors,
        }

    async def run(self) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        try:
            await run_batches(
                lambda: self.inp.get_many(self.batch), self.proc.process, self._emit, executor
            )
        finally:
            executor.shutdown(wait=False)

    async def _emit(self, items: list[FeatureFrame | Score]) -> None:
        await self.out.put_many(items)
        self.emitted()

    def emitted(self) -> None:
        """A batch was scored and passed on (by ``run``, or by the DSP stage when it scores its
        batches itself: ``models.inline``); on the event loop."""
        self.batches += 1
        self.batch_done.set()


def _slot_status(ms: ModelSet, asset: str) -> dict[str, dict[str, str]]:
    out = {}
    for role, scorer in (
        ("active", ms.active.get(asset)),
        ("shadow", ms.shadow.get(asset)),
        ("fallback", ms.fallback.get(asset)),
    ):
        if scorer is not None:
            out[role] = {
                "id": scorer.model_id,
                "version": scorer.version,
                "quantization": scorer.manifest.quantization,
            }
    return out
