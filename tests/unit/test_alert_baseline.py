"""The vectorised baseline bank equals a plain per-frame EWMA, whatever the interleaving of
channels, the learn flags, non-finite values and layout changes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts.baseline import MAX_PENDING, BaselineBank
from gateway.core.records import FeatureFrame, Quality

NAMES = {3: ("a", "b", "c"), 2: ("a", "b")}


def frame(asset: str, channel: str, values: list[float], fresh: bool = False) -> FeatureFrame:
    """A frame of the layout of ``len(values)`` features; ``fresh``: in tuples equal to the
    shared ones but other objects (a layout rebuilt by its producer)."""
    names = tuple(list(NAMES[len(values)])) if fresh else NAMES[len(values)]
    return FeatureFrame(
        asset, channel, 0, 1, 0, 1, names, ("g",) * len(names), np.array(values), Quality.GOOD
    )


class Reference:
    """One channel's baseline, one observation at a time (the definition)."""

    def __init__(self, names: tuple[str, ...], x: np.ndarray) -> None:
        self.names, self.mean, self.var, self.last, self.n = names, x.copy(), 0 * x, x.copy(), 0

    def observe(self, names: tuple[str, ...], x: np.ndarray, learn: bool, a: float) -> None:
        if names != self.names:
            self.__init__(names, x)  # type: ignore[misc]
            return
        if learn:
            if self.n == 0:
                self.mean = self.last.copy()
            else:
                d = self.last - self.mean
                self.mean = self.mean + a * d
                self.var = (1 - a) * (self.var + a * d * d)
            self.n += 1
        self.last = x


values = st.floats(-1e3, 1e3) | st.just(float("nan")) | st.just(float("inf"))
observation = st.tuples(
    st.sampled_from([("m1", "x"), ("m1", "y"), ("m2", "x")]),
    st.lists(values, min_size=2, max_size=3),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(observation, max_size=60), st.integers(1, 7), st.sampled_from([None, "m1", "m2"]))
def test_bank_equals_per_frame_definition(obs: list, settle_every: int, part: str | None) -> None:
    """Settled every few observations: all of them, or one asset's (``part``) only."""
    a = 0.2
    bank = BaselineBank(a, min_windows=1)
    ref: dict[tuple[str, str], Reference] = {}
    for i, ((asset, ch), vals, learn, fresh) in enumerate(obs):
        f = frame(asset, ch, vals, fresh)
        bank.observe(f, learn)
        x = np.where(np.isfinite(f.values), f.values, 0.0)
        r = ref.get((asset, ch))
        if r is None:
            ref[(asset, ch)] = Reference(f.names, x)
        else:
            r.observe(f.names, x, learn, a)
        if i % settle_every == 0:
            bank.settle(part)
    bank.settle()
    for (asset, ch), r in ref.items():
        slot = bank._slots[(asset, ch)]
        row = slot.row
        assert slot.names == r.names
        np.testing.assert_allclose(slot.block.mean[row], r.mean, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(slot.block.var[row], r.var, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(slot.block.last[row], r.last)
        assert slot.block.n[row] == r.n


def test_top_names_the_deviating_feature_of_the_asset() -> None:
    bank = BaselineBank(0.1, min_windows=5)
    rng = np.random.default_rng(1)
    for _ in range(50):
        for ch in ("x", "y"):
            bank.observe(frame("m1", ch, list(1.0 + 0.01 * rng.standard_normal(3))), True)
        bank.observe(frame("m2", "x", [0.0, 0.0, 0.0]), True)
    bank.observe(frame("m1", "y", [1.0, 5.0, 1.0]), True)
    top = bank.top("m1", 2)
    assert top[0][0] == "y.b"
    assert top[0][1] > 10
    assert all(not name.startswith("m2") for name, _ in top)


def test_a_full_queue_settles_by_itself_in_order() -> None:
    """More observations than the queue holds, never settled by the caller: every channel's
    observations still apply in their order (several per channel in one settle)."""
    a = 0.1
    bank = BaselineBank(a, min_windows=1)
    rng = np.random.default_rng(7)
    ref: dict[tuple[str, str], Reference] = {}
    keys = [("m1", "x"), ("m1", "y"), ("m2", "x"), ("m3", "z"), ("m3", "w")]
    for i in range(3 * MAX_PENDING + 5):
        asset, ch = keys[int(rng.integers(len(keys)))]
        f = frame(asset, ch, list(rng.standard_normal(3)))
        learn = bool(i % 5)
        bank.observe(f, learn)
        r = ref.get((asset, ch))
        if r is None:
            ref[(asset, ch)] = Reference(f.names, f.values.copy())
        else:
            r.observe(f.names, f.values.copy(), learn, a)
    assert len(bank._frames) < MAX_PENDING  # (it settled on its own)
    bank.settle()
    for key, r in ref.items():
        slot = bank._slots[key]
        np.testing.assert_allclose(slot.block.mean[slot.row], r.mean, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(slot.block.var[slot.row], r.var, rtol=1e-12, atol=1e-9)
        assert slot.block.n[slot.row] == r.n
