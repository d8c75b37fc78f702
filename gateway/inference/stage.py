"""The inference stage: feature frames in, the same frames plus their scores out.

Each frame of an asset that has a model, whose channel carries the model's features, is scored;
the stage forwards every frame, each followed by its ``Score`` (model id and version, channel,
threshold). Frames whose model features are not finite (a missing speed, a Bad window) or whose
quality is Bad are forwarded unscored and counted; so are frames the model fails on or scores
as NaN/inf (counted apart, logged once per change between failing and working). A batch of
frames is scored on the stage's own worker thread (one interpreter call per model per batch),
so the event loop never runs the model. Drains its input on close, then returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gateway.config.plant import Asset, Channel
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame, Quality, Score
from gateway.dsp.config import DspConfig
from gateway.inference.check import check_model_features
from gateway.inference.config import ModelsConfig
from gateway.inference.scorer import Scorer, load_scorer
from gateway.runtime.queues import BoundedQueue, QueueClosed

log = logging.getLogger(__name__)
BATCH = 64


def load_models(
    cfg: ModelsConfig,
    state_dir: Path,
    channels: dict[str, Channel],
    assets: dict[str, Asset],
    dsp: DspConfig,
) -> dict[str, Scorer]:
    """The model of each asset in ``cfg.assets``, loaded and checked against the configured
    features; one ``ConfigError`` listing every problem (``models.assets.<asset>``)."""
    errors: list[tuple[str, str]] = []
    out: dict[str, Scorer] = {}
    loaded: dict[str, Scorer] = {}
    for asset, model_id in cfg.assets.items():
        key = f"models.assets.{asset}"
        if asset not in assets:
            continue  # reported by cross_check
        try:
            scorer = loaded.get(model_id) or load_scorer(
                cfg.model_dir(state_dir, model_id), cfg.threads, cfg.batch
            )
        except ConfigError as exc:
            errors += [(key, f"{p}: {r}" if p else r) for p, r in exc.errors]
            continue
        except ValueError as exc:
            errors.append((key, f"model {model_id!r}: {exc}"))
            continue
        loaded[model_id] = scorer
        errors += check_model_features(scorer.manifest, channels, {asset: assets[asset]}, dsp, key)
        out[asset] = scorer
    if errors:
        raise ConfigError(errors)
    return out


class InferenceProcessor:
    """The pure part: scores a batch of frames (no asyncio)."""

    def __init__(self, models: dict[str, Scorer]) -> None:
        self.models = models
        self.scored = 0
        self.unscored = 0
        #: scores the model returned as NaN or infinite (not emitted), and failed model calls
        self.invalid = 0
        self.errors = 0
        #: seconds spent inside model calls, and the frames they scored (mean latency per frame)
        self.infer_seconds = 0.0
        self.infer_frames = 0
        self._failing: set[str] = set()  # model ids whose last batch failed or was invalid

    def _state(self, model_id: str, bad: bool, why: str) -> None:
        """Log a model's state changes once (failing <-> working again)."""
        if bad and model_id not in self._failing:
            self._failing.add(model_id)
            log.error("model %s: %s; its frames are forwarded unscored", model_id, why)
        elif not bad and model_id in self._failing:
            self._failing.discard(model_id)
            log.info("model %s scores again", model_id)

    def process(self, frames: list[FeatureFrame]) -> list[FeatureFrame | Score]:
        """The frames in order, each followed by its score when it has one."""
        # group by asset and feature layout (frames of one channel share their names tuple)
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        models = self.models
        for i, f in enumerate(frames):
            if f.asset in models:
                key = (f.asset, f.names)
                where = groups.get(key)
                if where is None:
                    groups[key] = [i]
                else:
                    where.append(i)
        scores: dict[int, Score] = {}
        for (asset, names), where in groups.items():
            scorer = models[asset]
            idx = scorer.columns(names)
            if idx is None:
                continue  # another kind of channel (a scalar, a microphone for a vibration model)
            x = np.concatenate([frames[i].values for i in where]).reshape(len(where), -1)[:, idx]
            ok = np.isfinite(x).all(axis=1)
            ok &= np.array([frames[i].quality != Quality.BAD for i in where])
            if not ok.all():
                self.unscored += int((~ok).sum())
                where = [i for i, good in zip(where, ok.tolist(), strict=True) if good]
                x = x[ok]
            if not where:
                continue
            mid, ver, thr = scorer.model_id, scorer.version, scorer.threshold
            t0 = time.perf_counter()
            try:
                values = scorer.score(x)
            except (RuntimeError, ValueError) as exc:
                self.errors += 1
                self.unscored += len(where)
                self._state(mid, True, f"inference failed ({exc})")
                continue
            self.infer_seconds += time.perf_counter() - t0
            self.infer_frames += len(where)
            finite = np.isfinite(values)
            if not finite.all():
                self.invalid += int((~finite).sum())
                self.unscored += int((~finite).sum())
            self._state(mid, not finite.all(), "the model returned non-finite scores")
            for i, v, good in zip(where, values.tolist(), finite.tolist(), strict=True):
                if not good:
                    continue
                f = frames[i]
                scores[i] = Score(f.asset, f.end_ts_ns, mid, ver, v, thr, channel=f.channel)
        self.scored += len(scores)
        if not scores:
            return list(frames)
        out: list[FeatureFrame | Score] = []
        for i, f in enumerate(frames):
            out.append(f)
            s = scores.get(i)
            if s is not None:
                out.append(s)
        return out


class InferenceStage:
    name = "inference"

    def __init__(
        self,
        models: dict[str, Scorer],
        inp: BoundedQueue[FeatureFrame],
        out: BoundedQueue[FeatureFrame | Score],
        batch: int = BATCH,
    ) -> None:
        self.proc = InferenceProcessor(models)
        self.inp, self.out, self.batch = inp, out, batch

    def status(self) -> dict[str, object]:
        p = self.proc
        return {
            "models": {
                a: {
                    "active": {
                        "id": s.model_id,
                        "version": s.version,
                        "quantization": s.manifest.quantization,
                    }
                }
                for a, s in p.models.items()
            },
            "latency_s": p.infer_seconds / p.infer_frames if p.infer_frames else 0.0,
            "scored": self.proc.scored,
            "unscored": self.proc.unscored,
            "invalid_scores": self.proc.invalid,
            "errors": self.proc.errors,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        try:
            while True:
                try:
                    frames = await self.inp.get_many(self.batch)
                except QueueClosed:
                    return
                for item in await loop.run_in_executor(executor, self.proc.process, frames):
                    await self.out.put(item)
        finally:
            executor.shutdown(wait=False)
