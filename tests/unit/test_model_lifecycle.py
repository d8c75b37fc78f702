"""Model lifecycle on a running inference stage with real LiteRT models: swap and rollback under
load with every frame scored exactly once, shadow candidates and their summary, automatic
rollback of a model that fails to load, scores NaN, or over-alerts (controllable clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.clock import FakeClock
from gateway.core.records import AlertEvent, AlertState, FeatureFrame, Score
from gateway.inference.lifecycle import ModelController, feature_check
from gateway.inference.registry import RefusedError, Registry, UnknownError
from gateway.inference.registry_cli import _list
from gateway.inference.stage import InferenceStage, load_models
from gateway.runtime.metrics import render
from gateway.runtime.queues import BoundedQueue
from gateway.status_cli import format_status
from tests.registry_data import config, frames, version
from tests.unit.test_inference import make_model


class Rig:
    """An inference stage and its lifecycle controller on a registry, fed by the test."""

    def __init__(self, state: Path, clock: FakeClock, **models: object) -> None:
        cfg = config(state, allow_unsigned=True, **models)
        self.cfg = cfg
        self.registry = Registry(cfg.models, state)
        self.clock = clock
        self.inp: BoundedQueue[FeatureFrame] = BoundedQueue("frames", 64)
        self.out: BoundedQueue[FeatureFrame | Score] = BoundedQueue("scored", 64)
        self.items: list[FeatureFrame | Score] = []
        self.got = asyncio.Event()
        self.stage: InferenceStage | None = None
        self.ctl: ModelController | None = None
        self.fed = 0

    def start(self) -> None:
        cfg = self.cfg
        models = load_models(
            cfg.models, cfg.gateway.state_dir, dict(cfg.channels), dict(cfg.assets), cfg.dsp
        )
        self.stage = InferenceStage(models, self.inp, self.out, batch=8)
        self.ctl = ModelController(
            cfg.models,
            cfg.gateway.state_dir,
            self.stage,
            self.clock,
            feature_check(cfg.models, dict(cfg.channels), dict(cfg.assets), cfg.dsp),
        )
        self._tasks = [asyncio.create_task(self.stage.run()), asyncio.create_task(self._drain())]

    async def _drain(self) -> None:
        while True:
            self.items.append(await self.out.get())
            self.got.set()

    def frames_out(self) -> int:
        return sum(isinstance(i, FeatureFrame) for i in self.items)

    async def wait_frames(self, n: int) -> None:
        async with asyncio.timeout(30):  # a hang guard, not a timing assertion
            while self.frames_out() < n:
                self.got.clear()
                await self.got.wait()

    async def feed(self, n: int) -> None:
        for f in frames(n, start=self.fed):
            await self.inp.put(f)
        self.fed += n

    async def feed_all(self, n: int) -> None:
        await self.feed(n)
        await self.wait_frames(self.fed)

    async def close(self) -> None:
        await self.inp.close()
        await self._tasks[0]
        self._tasks[1].cancel()

    def active_scores(self) -> list[Score]:
        return [i for i in self.items if isinstance(i, Score) and not i.shadow]

    def shadow_scores(self) -> list[Score]:
        return [i for i in self.items if isinstance(i, Score) and i.shadow]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "state", FakeClock(), rollback={"period_s": 60, "min_frames": 20})
    src = tmp_path / "src"
    r.registry.install(version(src, "1.0"))
    r.registry.install(version(src, "2.0"))
    r.registry.install(version(src, "hot", threshold=0.001))  # every frame above threshold
    r.registry.install(version(src, "nan", nan=True))
    r.start()
    yield r
    await r.close()


def segments(versions: list[str]) -> list[str]:
    out: list[str] = []
    for v in versions:
        if not out or out[-1] != v:
            out.append(v)
    return out


async def test_swap_and_rollback_under_load_score_every_frame_exactly_once(rig: Rig) -> None:
    assert rig.ctl is not None
    feeder = asyncio.create_task(rig.feed(3000))
    await rig.wait_frames(500)
    rig.registry.promote("test-model", "2.0")  # what `pdm-gateway models promote` does
    await rig.ctl.tick()
    await rig.wait_frames(1800)
    rig.registry.rollback("test-model")
    await rig.ctl.tick()
    await feeder
    await rig.wait_frames(3000)
    scores = rig.active_scores()
    assert sorted(s.ts_ns for s in scores) == list(range(3000))  # each frame once
    assert [s.ts_ns for s in scores] == list(range(3000))  # in order
    # the old version before the swap, the new one after, the old one after the rollback
    assert segments([s.model_version for s in scores]) == ["1.0", "2.0", "1.0"]
    assert not rig.shadow_scores()
    assert rig.ctl.rollbacks == 0  # manual rollbacks are not counted as automatic ones


async def test_shadow_candidate_scores_the_same_frames_and_is_summarised(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rig.ctl is not None
    rig.registry.set_shadow("test-model", "hot")
    await rig.ctl.tick()
    await rig.feed_all(200)
    active, shadow = rig.active_scores(), rig.shadow_scores()
    assert [s.ts_ns for s in active] == [s.ts_ns for s in shadow] == list(range(200))
    assert {(s.model_version, s.shadow) for s in active} == {("1.0", False)}
    assert {(s.model_version, s.shadow) for s in shadow} == {("hot", True)}
    # each frame is followed by its active score, then its shadow score
    kinds = [
        type(i).__name__ + ("*" if isinstance(i, Score) and i.shadow else "") for i in rig.items
    ]
    assert kinds[:6] == ["FeatureFrame", "Score", "Score*"] * 2
    await rig.ctl.tick()
    summary = rig.ctl.summary()["test-model"]
    assert isinstance(summary, dict)
    assert (summary["active"], summary["shadow"]) == ("1.0", "hot")
    runs = summary["versions"]
    assert runs["hot"]["shadow"]["alert_rate"] == 1.0
    assert runs["hot"]["shadow"]["scored"] == 200
    assert runs["1.0"]["active"]["alert_rate"] < 0.05
    assert runs["1.0"]["active"]["p50"] < runs["1.0"]["active"]["threshold"]
    assert rig.stage is not None
    assert "model pump: test-model 1.0, shadow hot" in format_status(
        {"inference": rig.stage.status()}
    )
    _list(rig.registry, False)  # `models list` reads what the gateway wrote
    out = capsys.readouterr().out
    assert "as shadow: 200 scored, would-be alert rate 100.00%" in out
    assert "as active: 200 scored" in out
    # the OPC UA server's hook promotes the candidate by asset, and rolls it back
    assert await rig.ctl.promote("pump", "2.0") == "2.0"
    assert await rig.ctl.rollback("pump") == "1.0"
    with pytest.raises(KeyError):
        await rig.ctl.promote("no-such-asset", "2.0")
    with pytest.raises(KeyError):
        await rig.ctl.promote("pump", "9.9")


async def test_a_candidate_that_scores_nan_in_shadow_is_never_promoted(rig: Rig) -> None:
    assert rig.ctl is not None
    rig.registry.set_shadow("test-model", "nan")
    await rig.ctl.tick()
    await rig.feed_all(40)
    await rig.ctl.tick()
    s = rig.registry.read_state()["test-model"]
    assert s.shadow is None
    assert "non-finite" in s.rejected["nan"]
    assert not rig.shadow_scores()
    assert len(rig.active_scores()) == 40
    with pytest.raises(ValueError, match="non-finite scores in shadow"):
        await rig.ctl.promote("pump", "nan")
    with pytest.raises(RefusedError, match="rejected"):
        rig.registry.promote("test-model", "nan")
    assert rig.registry.read_state()["test-model"].active == "1.0"


async def test_a_promoted_model_that_scores_nan_is_rolled_back_without_losing_frames(
    rig: Rig,
) -> None:
    assert rig.ctl is not None
    events = []
    rig.ctl.on_event = events.append
    records: BoundedQueue[AlertEvent] = BoundedQueue("records", 16)
    rig.ctl.out = records
    await rig.feed_all(50)
    rig.registry.promote("test-model", "nan", force=True)  # forced past any shadow run
    await rig.ctl.tick()
    assert rig.ctl.probation["test-model"].version == "nan"
    await rig.feed_all(50)
    await rig.ctl.tick()
    scores = rig.active_scores()
    assert [s.ts_ns for s in scores] == list(range(100))  # the fallback scored the NaN batches
    assert {s.model_version for s in scores} == {"1.0"}
    s = rig.registry.read_state()["test-model"]
    assert s.active == "1.0"
    assert "non-finite" in s.rejected["nan"]
    assert rig.ctl.rollbacks == 1
    assert rig.ctl.status()["rollbacks"] == 1
    (ev,) = events
    assert (ev.rule, ev.category, ev.asset, ev.model_version, ev.state) == (
        "model-rollback",
        "sensor",
        "pump",
        "nan",
        AlertState.RAISED,
    )
    assert "rolled back to 1.0" in ev.message
    assert list(rig.ctl.events) == events
    assert await records.get_many(16) == events  # on their way to the store
    assert rig.stage is not None
    text = format_status({"inference": rig.stage.status(), "model_lifecycle": rig.ctl.status()})
    assert "automatic model rollbacks: 1 (last: model test-model nan rolled back to 1.0" in text
    scrape = render(lambda: {"model_lifecycle": rig.ctl.status() if rig.ctl else {}}).decode()
    assert "pdm_model_rollbacks_total 1.0" in scrape


async def test_a_promoted_model_that_fails_to_load_is_rolled_back(rig: Rig) -> None:
    assert rig.ctl is not None
    f = rig.registry.root / "test-model" / "2.0" / "model.tflite"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")  # damaged after install
    rig.registry.promote("test-model", "2.0")
    await rig.ctl.tick()
    assert rig.registry.read_state()["test-model"].active == "1.0"
    assert "failed to load" in rig.registry.read_state()["test-model"].rejected["2.0"]
    assert rig.ctl.rollbacks == 1
    await rig.feed_all(20)
    assert {s.model_version for s in rig.active_scores()} == {"1.0"}
    with pytest.raises(ValueError, match="failed to load"):
        await rig.ctl.promote("pump", "2.0")  # rejected now
    with pytest.raises(UnknownError):
        rig.registry.rollback("no-such-model")


async def test_an_over_alerting_model_is_rolled_back_after_the_period(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rig.ctl is not None
    await rig.feed_all(100)
    rig.registry.promote("test-model", "hot")
    await rig.ctl.tick()
    await rig.feed_all(100)
    rig.clock.advance(30)
    await rig.ctl.tick()
    assert "test-model" in rig.ctl.probation  # the period has not passed yet
    assert rig.registry.read_state()["test-model"].active == "hot"
    _list(rig.registry, False)
    assert "hot                  active (on probation)" in capsys.readouterr().out
    rig.clock.advance(31)
    await rig.ctl.tick()
    s = rig.registry.read_state()["test-model"]
    assert s.active == "1.0"
    assert "alert rate 100.00% over 100 frames" in s.rejected["hot"]
    assert rig.ctl.rollbacks == 1
    await rig.feed_all(10)
    # a version alerting like the previous one passes its probation and stays
    rig.registry.promote("test-model", "2.0")
    await rig.ctl.tick()
    await rig.feed_all(100)
    rig.clock.advance(61)
    await rig.ctl.tick()
    assert "test-model" not in rig.ctl.probation
    assert rig.registry.read_state()["test-model"].active == "2.0"
    assert rig.ctl.rollbacks == 1
    await rig.feed_all(10)
    versions = [s.model_version for s in rig.active_scores()]
    assert segments(versions) == ["1.0", "hot", "1.0", "2.0"]
    assert len(versions) == rig.fed


async def test_a_promoted_version_the_dsp_cannot_feed_is_rolled_back(
    rig: Rig, tmp_path: Path
) -> None:
    assert rig.ctl is not None
    d = make_model(tmp_path / "bad", version="bad", schema_version="pdm-features/1")
    rig.registry.install(d)
    with pytest.raises(ValueError, match="pdm-features/1"):
        await rig.ctl.promote("pump", "bad")
    s = rig.registry.read_state()["test-model"]
    assert s.active == "1.0"
    assert "needs feature schema 'pdm-features/1'" in s.rejected["bad"]
    await rig.feed_all(10)
    assert {x.model_version for x in rig.active_scores()} == {"1.0"}
