"""The drain path against a real server (VictoriaMetrics): the fast line encoding writes the same
values as the general one, a partial batch waiting to fill is read and encoded once, the
priority lane is read through its index however long the bulk backlog, and a rejected record is
read again for its dead-letter copy (counted and logged when it was evicted meanwhile)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from gateway.core.clock import FakeClock
from gateway.core.records import FeatureFrame
from gateway.store.access import JournalAccess
from gateway.store.codec import record_row
from gateway.store.journal import Journal, Row, StoredRow
from gateway.store.layouts import Layout
from gateway.uplink import forwarder as forwarder_module
from gateway.uplink.config import InfluxUplinkConfig
from gateway.uplink.forwarder import InfluxForwarder, Ref
from gateway.uplink.lineproto import stored_line, to_line
from tests.uplink.records import STEP_NS, T0, alert, frame
from tests.uplink.victoria import VictoriaMetrics, victoria_metrics

#: floats whose shortest forms differ between ``repr`` and the fast encoder (``1e-05`` and
#: ``0.00001``), extremes, and values needing all 17 digits
EDGE = (1e-05, 1e-07, 1e16, 1e20, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -2.5e-10)


@pytest.fixture
async def vm(tmp_path: Path) -> AsyncIterator[VictoriaMetrics]:
    async with victoria_metrics(tmp_path / "vm") as server:
        yield server


def cfg(url: str, **kw: object) -> InfluxUplinkConfig:
    base: dict[str, object] = {
        "url": url,
        "org": "plant",
        "bucket": "pdm",
        "token": SecretStr("t"),
        "batch_size": 50,
        "flush_interval_s": 1.0,
    }
    return InfluxUplinkConfig.model_validate({**base, **kw})


def feature(i: int, values: dict[str, object]) -> Row:
    pl: dict[str, object] = {"features": values, "quality": "good"}
    return Row("feature", T0 + i * STEP_NS, "m1", "m1_vib", pl)


def edge_frame(asset: str, channel: str, v: float) -> FeatureFrame:
    names = ("x",)
    return FeatureFrame(asset, channel, T0, T0 + 1, T0 + 2, "v1", names, ("g",), np.array([v]))


def test_fast_feature_fields_equal_the_general_encoding() -> None:
    plain = feature(0, {f"f{k}": v for k, v in enumerate(EDGE)})
    # a name to escape, and a null, a bool and a string, take the general path
    odd = feature(0, {"a b": 1.5, "n": None, "t": True, "s": "x", "i": 3})

    def fields(line: str) -> dict[str, float]:
        body = line.split(" ")[-2] if "a\\ b" not in line else line.split(" ", 3)[-1].rsplit(" ")[0]
        out = {}
        for part in body.split(","):
            k, v = part.rsplit("=", 1)
            out[k] = float(v.removesuffix("i"))
        return out

    got = fields(to_line(plain))
    assert list(got) == [f"f{k}" for k in range(len(EDGE))] + ["quality"]
    for k, v in enumerate(EDGE):
        assert got[f"f{k}"] == v
        assert math.copysign(1, got[f"f{k}"]) == math.copysign(1, v)
    assert to_line(odd) == f"feature,asset=m1,channel=m1_vib a\\ b=1.5,i=3.0,quality=0i {T0}"


async def test_edge_floats_arrive_as_their_repr_would(vm: VictoriaMetrics, tmp_path: Path) -> None:
    """The server stores what ``repr`` would have written (it keeps about 15 digits: compared
    with the same values posted as ``repr`` text, one series each), from payloads in the store's
    own layout (encoded from their JSON text, asset ``text``) and in another (decoded first)."""
    journal = Journal(tmp_path / "j.sqlite", sinks=["influxdb"])
    access = JournalAccess(journal)
    journal.append(
        [
            Row("feature", T0, "fast", f"c{k}", {"features": {"x": v}, "quality": "good"})
            for k, v in enumerate(EDGE)
        ]
    )
    journal.append([record_row(edge_frame("text", f"c{k}", v)) for k, v in enumerate(EDGE)])
    journal.append([record_row(alert(0))])  # (a priority record on the way)
    fwd = InfluxForwarder(cfg(vm.url), access, FakeClock(auto_advance=True))
    task = asyncio.create_task(fwd.run())
    async with asyncio.timeout(30):
        await fwd.drained()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    access.close()
    ref = "\n".join(f"feature,asset=repr,channel=c{k} x={v!r} {T0}" for k, v in enumerate(EDGE))
    url = f"{vm.url}/api/v2/write?precision=ns"
    async with vm.session() as s, s.post(url, data=ref) as r:
        assert r.status == 204
    got: dict[str, dict[str, float]] = {}
    for labels, _, v in await vm.values("feature_x"):
        got.setdefault(labels["asset"], {})[labels["channel"]] = v
    assert len(got["fast"]) == len(EDGE)
    assert got["fast"] == got["repr"]
    assert got["text"] == got["repr"]
    for k, v in enumerate(EDGE):
        assert math.isclose(got["fast"][f"c{k}"], v, rel_tol=1e-13, abs_tol=1e-300)


async def test_a_partial_batch_waiting_to_fill_is_encoded_once(
    vm: VictoriaMetrics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    encoded: list[int] = []
    seen = asyncio.Event()

    def counting(t: StoredRow, known: Mapping[str, Layout]) -> bytes:
        encoded.append(t[0])
        loop.call_soon_threadsafe(seen.set)
        return stored_line(t, known)

    monkeypatch.setattr(forwarder_module, "stored_line", counting)
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite", sinks=["influxdb"])
    access = JournalAccess(journal)
    fwd = InfluxForwarder(cfg(vm.url), access, clock)
    task = asyncio.create_task(fwd.run())
    n = 0
    for _ in range(4):  # four appends of 10 while the 50-record batch waits to fill
        await access.call(journal.append, [record_row(frame(i)) for i in range(n, n + 10)])
        n += 10
        access.notify_appended()
        async with asyncio.timeout(30):
            while len(encoded) < n:
                seen.clear()
                await seen.wait()
    assert fwd.sent == 0  # nothing sent before the flush interval
    clock.advance(1.0)
    async with asyncio.timeout(30):
        await fwd.drained()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    access.close()
    assert sorted(encoded) == list(range(1, n + 1))  # each record encoded once
    assert fwd.sent == n
    assert len(await vm.values("feature_i")) == n


def test_the_priority_lane_is_read_through_its_index(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", sinks=["influxdb"])
    journal.append([record_row(frame(i)) for i in range(2000)])
    journal.append([record_row(alert(1))])
    db = journal._db  # (SQLite virtual machine steps are counted through a progress handler)

    def steps(fn: Callable[[], object]) -> tuple[int, object]:
        n = 0

        def count() -> int:
            nonlocal n
            n += 1
            return 0

        db.set_progress_handler(count, 10)
        try:
            out = fn()
        finally:
            db.set_progress_handler(None, 0)
        return n, out

    scan, _ = steps(lambda: db.execute("SELECT count(*) FROM records WHERE seq > 0").fetchone())
    read, rows = steps(lambda: journal.read("influxdb", 10, "priority"))
    counted, backlog = steps(lambda: journal.backlog("influxdb"))
    assert isinstance(rows, list)
    assert [r.kind for r in rows] == ["alert"]
    assert isinstance(backlog, tuple)
    assert backlog[0] == 2001
    assert read * 10 < scan  # the index, not the 2000 bulk records
    assert counted < 2 * scan  # one pass over the bulk lane (its count), not three
    journal.close()


async def test_a_rejected_record_evicted_meanwhile_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j.sqlite", sinks=["influxdb"])
    access = JournalAccess(journal)
    seq = journal.append([record_row(frame(0))])
    fwd = InfluxForwarder(cfg("http://127.0.0.1:9"), access, FakeClock())
    # the server refused it, and the store evicted it before it could be copied
    await fwd._reject(Ref(seq + 1, "feature", "m1"), "bulk", "HTTP 400 bad data")
    assert fwd.rejected == 1
    assert await access.call(journal.dead_letters, "influxdb") == []
    assert f"record {seq + 1} is gone from the store" in caplog.text
    await fwd._reject(Ref(seq, "feature", "m1"), "bulk", "HTTP 400 bad data")
    dead = await access.call(journal.dead_letters, "influxdb")
    assert [(r.seq, reason) for r, reason in dead] == [(seq, "HTTP 400 bad data")]
    access.close()
