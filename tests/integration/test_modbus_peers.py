"""The collector against Modbus servers nobody here wrote: libmodbus (compiled here from
``peers/libmodbus_server.c``) and a plain pymodbus server: every type and byte/word order
round trips, busy and illegal-address answers are handled."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.collectors.modbus.collector import ModbusCollector
from gateway.collectors.modbus.config import ModbusDevice, ModbusTag, PollGroup
from gateway.config.plant import Channel
from gateway.core.clock import SystemClock
from gateway.core.records import Quality, Reading, SampleBlock
from gateway.demo import free_port
from gateway.runtime.queues import BoundedQueue
from tests.unit.test_modbus_decode import encode

PEERS = Path(__file__).parent / "peers"
#: (channel, address, type, order, expected value)
VALUES = [
    ("f_abcd", 0, "float32", "ABCD", 123.456),
    ("f_dcba", 2, "float32", "DCBA", 123.456),
    ("f_badc", 4, "float32", "BADC", 123.456),
    ("f_cdab", 6, "float32", "CDAB", 123.456),
    ("i16", 10, "int16", "ABCD", -12345),
    ("u16", 11, "uint16", "ABCD", 54321),
    ("i32_abcd", 12, "int32", "ABCD", -123456789),
    ("i32_cdab", 14, "int32", "CDAB", -123456789),
    ("u32_abcd", 16, "uint32", "ABCD", 3_000_000_000),
    ("u32_dcba", 18, "uint32", "DCBA", 3_000_000_000),
    ("f64", 20, "float64", "ABCD", -2.5e-3),
    ("i64", 24, "int64", "ABCD", -1_099_511_627_783),
    ("u64_cdab", 28, "uint64", "CDAB", 4_503_599_627_370_499),
]


def tags(function: int) -> list[ModbusTag]:
    return [
        ModbusTag(channel=c, function=function, address=a, type=t, order=o)  # type: ignore[arg-type]
        for c, a, t, o, _ in VALUES
    ]


async def collect(
    port: int,
    tag_list: list[ModbusTag],
    want: set[str],
    bad: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Reading]:
    """Run a collector until every channel in ``want`` has a Good reading and every channel in
    ``bad`` a Bad one."""
    channels = {t.channel: Channel(kind="temperature") for t in tag_list}
    cfg = ModbusDevice(
        host="127.0.0.1",
        port=port,
        unit_id=1,
        timeout_s=1.0,
        busy_retries=1,
        busy_retry_s=0.01,
        stale_after_periods=2,
        poll_groups={"default": PollGroup(period_s=0.1)},
        tags=tag_list,
    )
    q: BoundedQueue[SampleBlock | Reading] = BoundedQueue("q", 100_000)
    col = ModbusCollector("peer", cfg, channels, q, SystemClock())
    task = asyncio.create_task(col.run())
    good: dict[str, Reading] = {}
    seen_bad: dict[str, Reading] = {}
    try:
        async with asyncio.timeout(30):
            while not (want <= set(good) and bad <= set(seen_bad)):
                r = await q.get()
                assert isinstance(r, Reading)
                (good if r.quality == Quality.GOOD else seen_bad)[r.channel] = r
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert col.counters.disconnects == 0
    return good | {f"bad:{k}": v for k, v in seen_bad.items()}


@pytest.fixture(scope="module")
def libmodbus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if (
        shutil.which("pkg-config") is None
        or subprocess.run(["pkg-config", "--exists", "libmodbus"]).returncode != 0
    ):
        pytest.fail("libmodbus-dev is not installed: run tests/setup-system-deps.sh")
    exe = tmp_path_factory.mktemp("peer") / "libmodbus_server"
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmodbus"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(exe), str(PEERS / "libmodbus_server.c"), *flags],
        check=True,
    )
    port = free_port()
    proc = subprocess.Popen([str(exe), str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield port
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("function", [3, 4])
async def test_libmodbus_every_type_and_order(libmodbus_server: int, function: int) -> None:
    extra = [ModbusTag(channel="name", function=function, address=40, type="string", length=4)]
    got = await collect(
        libmodbus_server, tags(function) + extra, {c for c, *_ in VALUES} | {"name"}
    )
    for channel, _, type_, _, expected in VALUES:
        tol = 1e-5 if type_.startswith("float") else 0
        assert got[channel].value == pytest.approx(expected, rel=tol), channel
    assert got["name"].value == 8.0  # "PDM-SIM!": strings report their decoded length


async def test_libmodbus_busy_and_illegal_address(libmodbus_server: int) -> None:
    tag_list = [
        ModbusTag(channel="ok", function=3, address=0, type="float32"),
        ModbusTag(channel="busy", function=3, address=900, type="uint16"),
        ModbusTag(channel="missing", function=3, address=5000, type="uint16"),
    ]
    got = await collect(libmodbus_server, tag_list, {"ok"}, {"busy", "missing"})
    assert got["ok"].value == pytest.approx(123.456, rel=1e-6)
    assert np.isnan(got["bad:missing"].value)  # illegal address: Bad, NaN
    assert got["bad:busy"].quality == Quality.BAD  # never answered: Bad once stale


@pytest.fixture
async def pymodbus_server() -> AsyncIterator[int]:
    regs = [0] * 64
    for _, address, type_, order, value in VALUES:
        words = encode(value, type_, order)  # the struct-based reference encoder
        regs[address : address + len(words)] = words
    port = free_port()
    server = ModbusTcpServer(
        [SimDevice(id=1, simdata=[SimData(0, values=regs, datatype=DataType.REGISTERS)])],
        address=("127.0.0.1", port),
    )
    await server.serve_forever(background=True)
    yield port
    await server.shutdown()  # type: ignore[no-untyped-call]


async def test_plain_pymodbus_server_every_type_and_order(pymodbus_server: int) -> None:
    got = await collect(pymodbus_server, tags(3), {c for c, *_ in VALUES})
    for channel, _, type_, _, expected in VALUES:
        tol = 1e-5 if type_.startswith("float") else 0
        assert got[channel].value == pytest.approx(expected, rel=tol), channel
