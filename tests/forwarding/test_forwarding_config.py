"""``[forwarding]`` validation: bad values and references fail at load with their key path;
the summary interval's aggregation (unit level, no I/O)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.config import parse_config
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame
from gateway.forwarding.summary import Summarizer
from tests.conftest import plant_toml

T0 = 1_700_000_000_000_000_000


def errors_of(text: str, tmp_path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(plant_toml(1502, tmp_path, units=1, extra=text), base_dir=tmp_path)
    return dict(exc.value.errors)


def test_defaults_forward_everything_and_keep_raw_data_on_site(tmp_path: Path) -> None:
    cfg = parse_config(plant_toml(1502, tmp_path, units=1), base_dir=tmp_path)
    a = cfg.forwarding.for_asset("m1")
    assert (a.mode, a.escalate, a.snapshot.enabled) == ("full", False, False)
    assert cfg.forwarding.escalation is None


def test_bad_values_and_references_name_their_key(tmp_path: Path) -> None:
    errs = errors_of(
        """
[forwarding]
ring_s = 1.0
[forwarding.default]
mode = "sometimes"
[forwarding.assets.m9]
summary_interval_s = 0
[forwarding.assets.m1]
escalate = true
snapshot = { enabled = true, length_s = 5.0, ambiguous_band = [0.8, 0.2] }
""",
        tmp_path,
    )
    assert "forwarding.default.mode" in errs
    assert "forwarding.assets.m9.summary_interval_s" in errs
    assert any(k.startswith("forwarding.assets.m1.snapshot") for k in errs)


def test_cross_checks(tmp_path: Path) -> None:
    errs = errors_of(
        """
[forwarding]
ring_s = 1.0
[forwarding.assets.m9]
mode = "summary"
[forwarding.assets.m1]
escalate = true
snapshot = { enabled = true, length_s = 5.0 }
""",
        tmp_path,
    )
    assert errs["forwarding.assets.m9"] == "unknown asset 'm9'"
    assert errs["forwarding.assets.m1.escalate"] == "needs [forwarding.escalation]"
    assert "forwarding.ring_s" in errs["forwarding.assets.m1.snapshot.length_s"]


def test_asset_tables_override_the_default_key_by_key(tmp_path: Path) -> None:
    text = """
[forwarding.default]
mode = "summary"
summary_interval_s = 30
snapshot = { enabled = true, length_s = 1.0, dtype = "float32" }
[forwarding.assets.m1]
pre_trigger_s = 5
snapshot = { length_s = 2.0 }
"""
    cfg = parse_config(plant_toml(1502, tmp_path, units=1, extra=text), base_dir=tmp_path)
    a = cfg.forwarding.for_asset("m1")
    assert (a.mode, a.summary_interval_s, a.pre_trigger_s) == ("summary", 30.0, 5.0)
    assert (a.snapshot.enabled, a.snapshot.length_s, a.snapshot.dtype) == (True, 2.0, "float32")


def test_escalation_needs_https(tmp_path: Path) -> None:
    errs = errors_of('[forwarding.escalation]\nurl = "http://127.0.0.1:1/x"\n', tmp_path)
    assert "https" in errs["forwarding.escalation.url"]


def frame(t_s: float, rms: float) -> FeatureFrame:
    ts = T0 + round(t_s * 1e9)
    return FeatureFrame(
        "m1", "v", ts, ts + 10**8, ts, "s", ("rms", "peak"), ("g", "g"), np.array([rms, np.nan])
    )


def test_summaries_per_aligned_interval_skip_non_finite_values() -> None:
    s = Summarizer({"m1": 2.0})
    out = [s.add(frame(t, v)) for t, v in ((0.0, 1.0), (0.5, 3.0), (1.9, 2.0), (2.1, 5.0))]
    assert out[:3] == [None, None, None]
    row = out[3]
    assert row is not None
    assert (row.kind, row.ts_ns, row.asset, row.channel) == ("summary", T0, "m1", "v")
    assert row.payload["features"] == {
        "rms": {"min": 1.0, "mean": 2.0, "max": 3.0, "last": 2.0},
        "peak": None,
    }
    assert row.payload["frames"] == 3
    (rest,) = s.flush()
    assert rest.ts_ns == T0 + 2 * 10**9
    assert rest.payload["features"]["rms"] == {"min": 5.0, "mean": 5.0, "max": 5.0, "last": 5.0}  # type: ignore[index]
    assert Summarizer({}).add(frame(0.0, 1.0)) is None  # full mode: no summaries


def test_escalation_and_uplink_need_names_of_their_own(tmp_path: Path) -> None:
    """Each sink keeps its own cursor in the store, by name: one name for both would make the
    uplink resume from the escalation's position after a restart."""
    errs = errors_of(
        """
[uplink.influxdb]
name = "cloud"
url = "http://127.0.0.1:1"
org = "o"
bucket = "b"
token = "t"
[forwarding.escalation]
name = "cloud"
url = "https://127.0.0.1:1/x"
""",
        tmp_path,
    )
    assert errs["forwarding.escalation.name"] == "'cloud' is the uplink's name too: use another"
