"""A batch shown to the raw tap counts and keeps exactly what its items shown one by one do."""

from __future__ import annotations

import numpy as np

from gateway.core.records import Reading, SampleBlock
from gateway.forwarding.ring import RawTap

FS = 1000.0


def items() -> list[SampleBlock | Reading]:
    out: list[SampleBlock | Reading] = []
    for k in range(6):
        for ch in ("v1", "v2", "loose"):
            samples = np.full(100, float(k), dtype=np.float32)
            out.append(SampleBlock(ch, k * 100_000_000, k * 100_000_000, FS, samples, k * 100))
        out.append(Reading("t1", k, k, 20.0 + k))
    return out


def test_a_batch_is_tapped_as_its_items_one_by_one() -> None:
    asset_of = {"v1": "m1", "v2": "m2", "t1": "m1"}
    for ringed in (set(), {"v1"}):
        one, many = RawTap(asset_of, 0.3, ringed), RawTap(asset_of, 0.3, ringed)
        for it in items():
            one(it)
        many.many(items())
        assert many.collected_bytes == one.collected_bytes
        assert one.collected_bytes == {"m1": 6 * 400 + 6 * 8, "m2": 6 * 400, "": 6 * 400}
        assert set(many.rings) == set(one.rings) == ringed
        for ch in ringed:
            got, want = many.rings[ch].last(0.3), one.rings[ch].last(0.3)
            assert got is not None
            assert want is not None
            assert got[:2] == want[:2]
            np.testing.assert_array_equal(got[2], want[2])
            np.testing.assert_array_equal(got[2], np.repeat([3.0, 4.0, 5.0], 100))
