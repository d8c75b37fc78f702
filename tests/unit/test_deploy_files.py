"""The deployment files agree with the code: every shipped config loads, the container config
reads the simulator that compose starts, and the Grafana dashboard asks only for measurements
and fields the gateway writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.config.loader import load_config
from gateway.config.plant import Asset, Bearing, Channel
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor
from gateway.dsp.features import SCALAR
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
CONFIGS = sorted(DEPLOY.rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path, env={"INFLUX_TOKEN": "t", "PDM_OPCUA_PASSWORD": "p"})
    assert cfg.channels


def test_container_config_reads_the_compose_simulator() -> None:
    cfg = load_config(DEPLOY / "container" / "gateway.toml", env={"INFLUX_TOKEN": "t"})
    compose = (DEPLOY / "container" / "compose.yaml").read_text()
    machines = int(re.search(r'"--machines", "(\d+)"', compose).group(1))  # type: ignore[union-attr]
    port = int(re.search(r'"--modbus-port", "(\d+)"', compose).group(1))  # type: ignore[union-attr]
    devs = cfg.devices.modbus
    assert sorted(d.unit_id for d in devs.values()) == list(range(1, machines + 1))
    assert {(d.host, d.port) for d in devs.values()} == {("simulator", port)}
    assert cfg.uplink.influxdb is not None
    assert str(cfg.uplink.influxdb.url).startswith("http://influxdb:8086")
    assert cfg.runtime.http.port == 9750
    assert '"127.0.0.1:9750:9750"' in compose


def test_dashboard_fields_exist_in_the_feature_schema() -> None:
    dash = json.loads((DEPLOY / "container/grafana/dashboards/machine-health.json").read_text())
    flux = " ".join(t["query"] for p in dash["panels"] for t in p["targets"])
    ex = ChannelExtractor(
        Channel(kind="vibration", sample_rate_hz=25_600),
        Asset(
            channels=["v"],
            shaft_speed_hz=24.75,
            bearing=Bearing(balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04),
        ),
        DspConfig(),
    )
    known = set(ex.names) | {n for n, _ in SCALAR} | {"score", "threshold", "message"}
    fields = set(re.findall(r'r\._field == "([^"]+)"', flux))
    assert fields
    assert fields <= known, fields - known
    measurements = set(re.findall(r'r\._measurement == "([^"]+)"', flux))
    assert measurements == {"feature", "score", "alert", "sensor"}
