"""Model registry: signed installs (tampered model, tampered manifest, wrong key, unsigned),
durable active/shadow state, encryption at rest and its key permissions, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.core.errors import ConfigError
from gateway.demo import free_port
from gateway.inference import crypto, signing
from gateway.inference.manifest import MANIFEST_NAME, read_manifest, read_model
from gateway.inference.registry import RefusedError, Registry, UnknownError
from gateway.inference.stage import load_models
from gateway.runtime.pipeline import Pipeline
from tests.conftest import plant_toml
from tests.registry_data import config, version


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """A publisher key pair: (private key, public key) under tmp_path/keys."""
    d = tmp_path / "keys"
    d.mkdir()
    signing.generate(d / "pub1.key", d / "pub1.pub")
    return d / "pub1.key", d / "pub1.pub"


def signed(root: Path, v: str, key: Path, **kw: object) -> Path:
    d = version(root, v, **kw)  # type: ignore[arg-type]
    assert main(["models", "sign", "--key", str(key), str(d)]) == 0
    return d


def registry(state: Path, **models: object) -> Registry:
    cfg = config(state, **models)
    return Registry(cfg.models, cfg.gateway.state_dir)


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    assert main(["models", "keygen", str(tmp_path / "publisher")]) == 0
    assert (tmp_path / "publisher.key").stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "publisher.pub").read_bytes()
    assert main(["models", "keygen", str(tmp_path / "publisher")]) == 1  # never overwritten


def test_signed_model_installs_and_becomes_active(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    d = signed(tmp_path / "src", "1.0", keys[0])
    assert read_manifest(d).signature is not None
    reg = registry(tmp_path / "state", trusted_keys=[str(keys[1])])
    m = reg.install(d)
    assert (m.model_id, m.version) == ("test-model", "1.0")
    s = reg.read_state()["test-model"]
    assert (s.active, s.shadow, s.versions) == ("1.0", None, ["1.0"])
    manifest, content = reg.load("test-model", "1.0")
    assert manifest.signature == read_manifest(d).signature
    assert content == (d / "model.tflite").read_bytes()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("tflite", "sha256"),
        ("manifest", "tampered manifest"),
        ("wrong-key", "not among the trusted keys"),
        ("unsigned", "unsigned"),
    ],
)
def test_refused_installs_say_which_check_failed_and_change_nothing(
    tmp_path: Path, keys: tuple[Path, Path], tamper: str, reason: str
) -> None:
    reg = registry(tmp_path / "state", trusted_keys=[str(keys[1])])
    reg.install(signed(tmp_path / "src", "1.0", keys[0]))
    before = reg.state_path.read_bytes()
    if tamper == "unsigned":
        d = version(tmp_path / "src", "2.0")
    elif tamper == "wrong-key":
        signing.generate(tmp_path / "other.key", tmp_path / "other.pub")
        d = signed(tmp_path / "src", "2.0", tmp_path / "other.key")
    else:
        d = signed(tmp_path / "src", "2.0", keys[0])
        if tamper == "tflite":
            data = bytearray((d / "model.tflite").read_bytes())
            data[-8] ^= 0xFF
            (d / "model.tflite").write_bytes(bytes(data))
        else:
            doc = json.loads((d / MANIFEST_NAME).read_text())
            doc["threshold"] = 30.0  # a higher threshold hides alarms
            (d / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(RefusedError, match=reason):
        reg.install(d, promote=True)
    assert reg.state_path.read_bytes() == before
    assert not (reg.root / "test-model" / "2.0").exists()
    assert reg.read_state()["test-model"].active == "1.0"


def test_unsigned_models_pass_only_when_the_config_allows(tmp_path: Path) -> None:
    d = version(tmp_path / "src", "1.0")
    with pytest.raises(RefusedError, match=r"unsigned.*allow_unsigned is false"):
        registry(tmp_path / "a").install(d)
    assert registry(tmp_path / "b", allow_unsigned=True).install(d).version == "1.0"


def test_a_bad_signature_is_refused_even_when_unsigned_models_are_allowed(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    d = signed(tmp_path / "src", "1.0", keys[0])
    doc = json.loads((d / MANIFEST_NAME).read_text())
    doc["description"] = "changed after signing"
    (d / MANIFEST_NAME).write_text(json.dumps(doc))
    reg = registry(tmp_path / "state", allow_unsigned=True, trusted_keys=[str(keys[1])])
    with pytest.raises(RefusedError, match="tampered manifest"):
        reg.install(d)


def test_installed_model_tampered_on_disk_is_refused_at_load(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    reg = registry(tmp_path / "state", trusted_keys=[str(keys[1])])
    reg.install(signed(tmp_path / "src", "1.0", keys[0]))
    f = reg.root / "test-model" / "1.0" / "model.tflite"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(RefusedError, match="sha256"):
        reg.load("test-model", "1.0")


def test_state_is_durable_and_the_pipeline_loads_the_active_version(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reg = registry(state, allow_unsigned=True)
    for v in ("1.0", "2.0", "3.0"):
        reg.install(version(tmp_path / "src", v))
    reg.promote("test-model", "2.0")
    reg.set_shadow("test-model", "3.0")
    again = registry(state, allow_unsigned=True)  # a restart
    s = again.read_state()["test-model"]
    assert (s.active, s.shadow, s.versions, s.history) == (
        "2.0",
        "3.0",
        ["1.0", "2.0", "3.0"],
        ["1.0"],
    )
    p = Pipeline(config(state, allow_unsigned=True))
    assert p.inference is not None
    assert p.inference.status()["models"] == {
        "pump": {"active": {"id": "test-model", "version": "2.0", "quantization": "float32"}}
    }
    assert again.rollback("test-model") == "1.0"
    with pytest.raises(RefusedError, match="no previous version"):
        again.rollback("test-model")


def test_remove_keeps_active_and_shadow(tmp_path: Path) -> None:
    reg = registry(tmp_path / "state", allow_unsigned=True)
    for v in ("1.0", "2.0", "3.0"):
        reg.install(version(tmp_path / "src", v))
    reg.set_shadow("test-model", "2.0")
    with pytest.raises(RefusedError, match="active version"):
        reg.remove("test-model", "1.0")
    with pytest.raises(RefusedError, match="shadow version"):
        reg.remove("test-model", "2.0")
    with pytest.raises(UnknownError, match="no installed version '9'"):
        reg.remove("test-model", "9")
    reg.remove("test-model", "3.0")
    assert not (reg.root / "test-model" / "3.0").exists()
    assert reg.read_state()["test-model"].versions == ["1.0", "2.0"]
    with pytest.raises(RefusedError, match="already installed"):
        reg.install(version(tmp_path / "again", "1.0"))


def enc_key(path: Path, mode: int = 0o600) -> Path:
    crypto.generate_key(path)
    os.chmod(path, mode)
    return path


def test_encrypted_at_rest_round_trip_and_wrong_key(tmp_path: Path) -> None:
    src = version(tmp_path / "src", "1.0")
    key = enc_key(tmp_path / "model.key")
    reg = registry(tmp_path / "state", allow_unsigned=True, encryption_key=str(key))
    reg.install(src)
    stored = reg.root / "test-model" / "1.0"
    plain = (src / "model.tflite").read_bytes()
    assert not (stored / "model.tflite").exists()
    blob = (stored / "model.tflite.enc").read_bytes()
    assert plain[:64] not in blob
    _, content = reg.load("test-model", "1.0")
    assert content == plain  # decrypted in memory only
    p = Pipeline(config(tmp_path / "state", allow_unsigned=True, encryption_key=str(key)))
    assert p.inference is not None
    other = enc_key(tmp_path / "other.key")
    wrong = registry(tmp_path / "state", allow_unsigned=True, encryption_key=str(other))
    with pytest.raises(ConfigError, match="wrong encryption key"):
        wrong.load("test-model", "1.0")
    with pytest.raises(RefusedError, match="encryption_key is not set"):
        registry(tmp_path / "state", allow_unsigned=True).load("test-model", "1.0")
    with pytest.raises(ConfigError) as e:
        Pipeline(config(tmp_path / "state", allow_unsigned=True, encryption_key=str(other)))
    assert e.value.errors[0][0] == "models.assets.pump"
    assert "wrong encryption key" in str(e.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key = enc_key(tmp_path / "model.key", mode)
    reg = registry(tmp_path / "state", allow_unsigned=True, encryption_key=str(key))
    with pytest.raises(ConfigError, match=rf"mode {mode:04o}.*chmod 600"):
        reg.install(version(tmp_path / "src", "1.0"))
    assert reg.read_state() == {}


def write_config(tmp_path: Path, **models: object) -> Path:
    """A gateway config file (a plant on an unused port) with ``[models]`` settings."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in models.items()]
    path = tmp_path / "gw.toml"
    text = plant_toml(free_port(), tmp_path / "state", units=1)
    path.write_text(text + "\n[models]\n" + "\n".join(lines) + "\n")
    return path


def test_cli_install_promote_rollback_remove_list(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path, trusted_keys=[str(keys[1])]))
    a, b = signed(tmp_path / "src", "1.0", keys[0]), signed(tmp_path / "src", "2.0", keys[0])
    assert main(["models", "install", str(a), "--config", cfg]) == 0
    assert main(["models", "install", str(b / "model.tflite"), "--config", cfg, "--shadow"]) == 0
    assert "installed test-model 2.0 (stored) as shadow" in capsys.readouterr().out
    assert main(["models", "promote", "test-model", "2.0", "--config", cfg]) == 0
    assert main(["models", "list", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "1.0" in out
    assert "2.0                  active" in out
    assert main(["models", "rollback", "test-model", "--config", cfg]) == 0
    assert "test-model 1.0 active again" in capsys.readouterr().out
    assert main(["models", "remove", "test-model", "1.0", "--config", cfg]) == 1
    assert "is the active version" in capsys.readouterr().err
    assert main(["models", "remove", "test-model", "2.0", "--config", cfg]) == 0
    unsigned = version(tmp_path / "src", "3.0")
    assert main(["models", "install", str(unsigned), "--config", cfg]) == 1
    assert "the manifest is unsigned" in capsys.readouterr().err
    assert main(["models", "list", "--config", cfg, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["test-model"]["active"] == "1.0"
    assert doc["test-model"]["versions"] == ["1.0"]


def test_sign_refuses_a_model_whose_file_does_not_match(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = version(tmp_path / "src", "1.0")
    (d / "model.tflite").write_bytes(b"not the model")
    assert main(["models", "sign", "--key", str(keys[0]), str(d)]) == 2
    assert "does not match" in capsys.readouterr().err
    assert read_model  # the same check guards the publisher and the gateway


def test_bad_key_settings_fail_at_start_with_their_key_path(tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_text("not a key")
    key = enc_key(tmp_path / "open.key", 0o644)
    with pytest.raises(ConfigError) as e:
        Pipeline(
            config(
                tmp_path / "state",
                trusted_keys=[str(tmp_path / "junk.pub")],
                encryption_key=str(key),
            )
        )
    paths = [p for p, _ in e.value.errors]
    assert paths[:2] == ["models.trusted_keys.0", "models.encryption_key"]


def test_shipped_models_install_unsigned_when_allowed_or_signed_by_the_operator(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "models" / "motor-pump"
    with pytest.raises(RefusedError, match="unsigned"):
        registry(tmp_path / "a").install(shipped)
    assert registry(tmp_path / "b", allow_unsigned=True).install(shipped).model_id
    copy = tmp_path / "motor-pump"
    shutil.copytree(shipped, copy)
    assert main(["models", "sign", "--key", str(keys[0]), str(copy)]) == 0
    reg = registry(tmp_path / "c", trusted_keys=[str(keys[1])])
    m = reg.install(copy)
    assert reg.load(m.model_id, m.version)[1] == (shipped / m.file).read_bytes()
    assert read_manifest(shipped).signature is None  # the shipped manifest is left as it is


def test_a_start_with_a_broken_active_version_rolls_back_and_a_check_changes_nothing(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    reg = registry(state, allow_unsigned=True)
    for v in ("1.0", "2.0"):
        reg.install(version(tmp_path / "src", v))
    reg.promote("test-model", "2.0")  # promoted while the gateway was stopped
    f = reg.root / "test-model" / "2.0" / "model.tflite"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    cfg = config(state, allow_unsigned=True)
    with pytest.raises(ConfigError, match="sha256"):  # check-config only reports
        load_models(cfg.models, state, dict(cfg.channels), dict(cfg.assets), cfg.dsp)
    assert reg.read_state()["test-model"].active == "2.0"
    p = Pipeline(cfg)
    assert p.models is not None
    assert p.inference is not None
    assert p.inference.status()["models"]["pump"]["active"]["version"] == "1.0"  # type: ignore[index]
    s = reg.read_state()["test-model"]
    assert s.active == "1.0"
    assert "sha256" in s.rejected["2.0"]
    assert p.models.rollbacks == 1
    assert p.models.events[0].rule == "model-rollback"


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    reg = registry(tmp_path / "state", allow_unsigned=True)
    reg.install(version(tmp_path / "src", "1.0"))
    for text in ("{not json", '{"models": {"test-model": {"actve": "1.0"}}}'):
        reg.state_path.write_text(text)
        with pytest.raises(ConfigError, match="unreadable registry state"):
            reg.read_state()
