"""Config loading: valid files, every kind of invalid one, env interpolation, TOML syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.core.errors import ConfigError
from tests.conftest import EXAMPLE, plant_toml


def errors_of(
    text: str, tmp_path: Path, env: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, base_dir=tmp_path, env=env or {})
    return exc.value.errors


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE, env={})
    assert set(cfg.assets) == {"p101", "m201"}
    assert cfg.channels["p101_de_vib"].unit == "g"  # default unit by kind
    assert cfg.channels["p101_bearing_temp"].unit == "degC"
    assert cfg.devices.modbus["p101"].waveforms[0].ring_length == 8192
    assert cfg.asset_of("m201_temp") == "m201"
    assert cfg.assets["p101"].bearing is not None


@pytest.mark.parametrize("example", sorted(EXAMPLE.parent.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_checks_ok(
    example: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "t")  # secrets the examples take from the environment
    monkeypatch.setenv("PDM_OPCUA_PASSWORD", "p")
    assert main(["check-config", str(example)]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_misspelled_key_fails_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("unit_id = 2", "unit_idd = 2"))
    assert main(["check-config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == "devices.modbus.m201.unit_idd: unknown key"


def test_wrong_type_and_range(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace("port = 5020", 'port = "x"')
    text = text.replace("timeout_s = 1.0", "timeout_s = -1")
    errs = dict(errors_of(text, tmp_path))
    assert "valid integer" in errs["devices.modbus.m1.port"]
    assert "greater than 0" in errs["devices.modbus.m1.timeout_s"]


def test_bad_enum_and_missing_key(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace('type = "float32"', 'type = "float33"')
    text = text.replace('kind = "temperature"\n', "")
    errs = dict(errors_of(text, tmp_path))
    assert "'float32'" in errs["devices.modbus.m1.tags.0.type"]
    assert errs["channels.m1_temp.kind"] == "required key is missing"


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=2)
    text = text.replace("unit_id = 1", "unit_id = 999").replace("unit_id = 2", "unitid = 2")
    paths = [p for p, _ in errors_of(text, tmp_path)]
    assert "devices.modbus.m1.unit_id" in paths
    assert "devices.modbus.m2.unitid" in paths


def test_model_level_checks_name_the_key(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace(
        "[[devices.modbus.m1.tags]]", "[[devices.modbus.m1.tags]]\npoll_group = 'slow'"
    )
    assert errors_of(text, tmp_path) == [
        ("devices.modbus.m1.tags.0.poll_group", "unknown poll group 'slow'")
    ]
    text = plant_toml(5020, tmp_path, units=1).replace('host = "127.0.0.1"\n', "")
    assert errors_of(text, tmp_path) == [("devices.modbus.m1", "transport 'tcp' needs 'host'")]


def test_cross_references_are_checked(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace(
        'channels = ["m1_vib", "m1_temp"]', 'channels = ["m1_vib", "m1_tmp"]'
    )
    errs = errors_of(text, tmp_path)
    assert ("assets.m1.channels.1", "unknown channel 'm1_tmp'") in errs
    assert any(p == "channels.m1_temp" and "no asset" in r for p, r in errs)
    text = plant_toml(5020, tmp_path, units=1).replace('channel = "m1_temp"', 'channel = "m1_vib"')
    errs = errors_of(text, tmp_path)
    assert any(p == "devices.modbus.m1.waveforms.0.channel" and "already fed" in r for p, r in errs)
    assert (
        "devices.modbus.m1.tags.0.channel",
        "channel 'm1_vib' is vibration: needs a waveform source",
    ) in errs


def test_waveform_channel_needs_sample_rate(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace("sample_rate_hz = 5120\n", "")
    assert errors_of(text, tmp_path) == [
        ("channels.m1_vib", "a vibration channel needs 'sample_rate_hz'")
    ]


UPLINK = """
[uplink.influxdb]
url = "http://127.0.0.1:8086"
org = "plant"
bucket = "pdm"
token = "${INFLUX_TOKEN}"
"""


def test_env_interpolation_and_secrets_stay_hidden(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1, extra=UPLINK)
    cfg = parse_config(text, base_dir=tmp_path, env={"INFLUX_TOKEN": "s3cr3t-token"})
    assert cfg.uplink.influxdb is not None
    assert cfg.uplink.influxdb.token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(cfg)
    assert "s3cr3t-token" not in str(cfg.model_dump())


def test_unset_env_var_is_an_error_with_path(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1, extra=UPLINK)
    assert errors_of(text, tmp_path, env={}) == [
        ("uplink.influxdb.token", "environment variable INFLUX_TOKEN is not set")
    ]


def test_dollar_escape(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace(
        "[assets.m1]", '[assets.m1]\ndescription = "cost $$5 ${X}"'
    )
    cfg = parse_config(text, base_dir=tmp_path, env={"X": "y"})
    assert cfg.assets["m1"].description == "cost $5 y"


def test_malformed_toml_reports_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "g.toml"
    bad.write_text('[gateway]\nname = "a"\nlog_level = \n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 3, column 13" in err
    assert "Traceback" not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nope.toml: no such file")
    assert len(err.splitlines()) == 1


def test_relative_state_dir_is_relative_to_config_file(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "g.toml"
    f.parent.mkdir()
    f.write_text(plant_toml(5020, Path("state"), units=1))
    cfg = load_config(f, env={})
    assert cfg.gateway.state_dir == (tmp_path / "sub" / "state").resolve()
    assert cfg.store_path() == cfg.gateway.state_dir / "journal.sqlite"


def test_opcua_device_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "g.toml"
    f.write_text(
        plant_toml(5020, tmp_path, units=1)
        + """
[channels.x_temp]
kind = "temperature"
[assets.x]
channels = ["x_temp"]
[devices.opcua.plc]
endpoint = "opc.tcp://127.0.0.1:4840"
nodes = [{ channel = "x_temp", namespace_uri = "urn:x", node_id = "s=T1" }]
"""
    )
    assert main(["check-config", str(f)]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_tag_unit_must_match_its_channel(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace(
        'type = "float32"\n', 'type = "float32"\nunit = "degF"\n', 1
    )
    assert errors_of(text, tmp_path) == [
        ("devices.modbus.m1.tags.0.unit", "'degF' differs from channel 'm1_temp' unit 'degC'")
    ]


def test_waveform_ring_checks(tmp_path: Path) -> None:
    base = plant_toml(5020, tmp_path, units=1)
    text = base.replace("ring_length = 8192", "ring_length = 6000")
    assert errors_of(text, tmp_path) == [
        ("devices.modbus.m1.waveforms.0", "ring_length must be a power of two")
    ]
    text = base.replace("period_s = 0.1\n", "period_s = 1.0\n")  # 5120 samples into 8192
    ((path, reason),) = errors_of(text, tmp_path)
    assert path == "devices.modbus.m1.waveforms.0.period_s"
    assert "poll at least every 0.8 s" in reason


def test_bands_above_nyquist_and_speed_channel_kind(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace(
        "[dsp]\n", "[dsp]\nenvelope_band_hz = [2000.0, 4000.0]\n"
    )
    assert errors_of(text, tmp_path) == [
        (
            "dsp.envelope_band_hz",
            "upper edge 4000.0 Hz is above channel 'm1_vib''s Nyquist frequency 2560.0 Hz",
        )
    ]
    text = plant_toml(5020, tmp_path, units=1).replace(
        "[assets.m1]\n", '[assets.m1]\nspeed_channel = "m1_temp"\n'
    )
    assert errors_of(text, tmp_path) == [
        ("assets.m1.speed_channel", "'m1_temp' must be a speed channel in Hz or rpm")
    ]


def test_a_store_budget_smaller_than_its_wal_allowance_is_refused(tmp_path: Path) -> None:
    text = plant_toml(5020, tmp_path, units=1).replace("[store]\n", "[store]\nmax_bytes = 65536\n")
    errs = dict(errors_of(text, tmp_path))
    assert "greater than or equal to 262144" in errs["store.max_bytes"]
