"""Alert rule and OPC UA server config: every mistake fails at load with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.core.errors import ConfigError
from tests.conftest import EXAMPLE, plant_toml

SECURED = EXAMPLE.parent / "gateway-secured.toml"


def errors_of(text: str, tmp_path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, base_dir=tmp_path, env={})
    return exc.value.errors


def rule(body: str) -> str:
    return "\n[alerts.rules.r1]\n" + body


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ('asset = "m1"\nraise_level = 0.5\nclear_level = 0.6', "alerts.rules.r1", "hysteresis"),
        ('asset = "m1"\nclear_level = 0.6', "alerts.rules.r1", "raise_level"),
        (
            'asset = "m1"\nraise_level = 1\nclear_level = 0\non_n = 4\non_m = 3',
            "alerts.rules.r1",
            "on_n",
        ),
        (
            'asset = "m1"\nsource = "iso20816"\nchannel = "m1_temp"',
            "alerts.rules.r1.channel",
            "not a vibration channel",
        ),
        (
            'asset = "m1"\nsource = "iso20816"\nchannel = "m2_vib"',
            "alerts.rules.r1.channel",
            "not a channel of 'm1'",
        ),
        ('asset = "m1"\nsource = "sensor"\nchannel = "m1_vib"', "alerts.rules.r1", "condition"),
        (
            'asset = "m1"\nsource = "sensor"\nchannel = "m1_vib"\ncondition = "saturated"',
            "alerts.rules.r1",
            "saturation_level",
        ),
        (
            'asset = "m1"\nsource = "feature"\nchannel = "m1_temp"\nfeature = "rms"\n'
            "raise_level = 1\nclear_level = 0",
            "alerts.rules.r1.feature",
            "value",
        ),
        (
            'asset = "m9"\nraise_level = 1\nclear_level = 0',
            "alerts.rules.r1.asset",
            "unknown asset",
        ),
        (
            'asset = "m1"\nsource = "sensor"\nchannel = "m1_vib"\ncondition = "hot"',
            "alerts.rules.r1.condition",
            "",
        ),
        (
            'asset = "m1"\nraise_level = 1\nclear_level = 0\n[alerts.rules.r1.action]\n'
            'target = { host = "plc", address = 70000 }',
            "alerts.rules.r1.action.target.ModbusAction.address",
            "",
        ),
        (
            'asset = "m1"\nraise_level = 1\nclear_level = 0\n[alerts.rules.r1.action]\n'
            'target = { endpoint = "http://plc", node_id = "ns=2;s=B" }',
            "alerts.rules.r1.action.target.OpcUaAction.endpoint",
            "",
        ),
    ],
)
def test_bad_rule_fails_with_its_path(tmp_path: Path, body: str, path: str, reason: str) -> None:
    errors = errors_of(plant_toml(5020, tmp_path) + rule(body), tmp_path)
    assert any(p == path and reason in r for p, r in errors), errors


def test_server_nobody_could_log_in(tmp_path: Path) -> None:
    errors = errors_of(plant_toml(5020, tmp_path) + "\n[opcua_server]\nenabled = true\n", tmp_path)
    assert any(p == "opcua_server" and "log in" in r for p, r in errors), errors


def test_server_password_must_be_a_hash(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path) + ('\n[opcua_server.users.op]\npassword_hash = "plain"\n')
    errors = errors_of(text, tmp_path)
    assert any(p == "opcua_server.users.op.password_hash" for p, _ in errors), errors


def test_secured_example_has_no_anonymous_access() -> None:
    cfg = load_config(SECURED, env={})
    s = cfg.opcua_server
    assert s.enabled
    assert not s.allow_anonymous
    assert "None" not in s.security_modes
    assert s.trust_clients == "pki"
    assert {u.role for u in s.users.values()} == {"read", "operator"}
    assert {r.category for r in cfg.alerts.rules.values()} == {"machine", "sensor"}
