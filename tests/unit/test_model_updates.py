"""Pulled model updates with a staged roll-out: real signed LiteRT models published in a directory
repository and in an HTTPS repository (aiohttp on 127.0.0.1 with a self-signed certificate
trusted through ``models.updates.ca_file``), pulled by ``Puller`` and by a running
``ModelController`` (controllable clock), and ``pdm-gateway models pull``."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from gateway.cli import main
from gateway.core.clock import FakeClock
from gateway.demo import free_port
from gateway.inference import signing
from gateway.inference.manifest import read_manifest
from gateway.inference.registry import Registry
from gateway.inference.updates import Puller
from gateway.runtime.metrics import render
from tests.registry_data import config
from tests.unit.test_model_lifecycle import Rig
from tests.unit.test_model_registry import signed, write_config
from tests.uplink.certs import self_signed

MID = "test-model"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "keys"
    d.mkdir()
    signing.generate(d / "pub.key", d / "pub.pub")
    return d / "pub.key", d / "pub.pub"


class Repo:
    """A model repository directory the test publishes signed versions into."""

    def __init__(self, root: Path, key: Path) -> None:
        self.root, self.key = root, key
        self.entries: list[dict[str, object]] = []
        root.mkdir(parents=True)
        self._write()

    def _write(self) -> None:
        (self.root / "index.json").write_text(json.dumps({"models": self.entries}))

    def publish(self, v: str, rings: list[str], *, tamper: bool = False, **kw: object) -> None:
        d = signed(self.root / MID, v, self.key, **kw)
        if tamper:  # the .tflite changed after signing
            f = d / read_manifest(d).file
            data = bytearray(f.read_bytes())
            data[-1] ^= 0xFF
            f.write_bytes(bytes(data))
        rel = d.relative_to(self.root).as_posix()
        self.entries.append({"model_id": MID, "version": v, "path": rel, "rings": rings})
        self._write()

    def release(self, v: str, rings: list[str]) -> None:
        for e in self.entries:
            if e["version"] == v:
                e["rings"] = rings
        self._write()


@pytest.fixture
def repo(tmp_path: Path, keys: tuple[Path, Path]) -> Repo:
    return Repo(tmp_path / "repo", keys[0])


@pytest.fixture
async def https(repo: Repo, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The repository served over HTTPS on 127.0.0.1: (URL, the certificate to trust)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = self_signed(certs)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_static("/repo", repo.root)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    yield f"https://127.0.0.1:{port}/repo", cert
    await runner.cleanup()


def gateway(state: Path, pub: Path, **updates: object) -> tuple[Registry, Puller]:
    cfg = config(state, trusted_keys=[str(pub)], updates=updates)
    reg = Registry(cfg.models, state)
    return reg, Puller(cfg.models, state, reg)


async def test_directory_repository_rings_and_shadow(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path]
) -> None:
    reg, puller = gateway(tmp_path / "state", keys[1], repository=str(repo.root), ring="canary")
    reg.install(signed(tmp_path / "local", "1.0", keys[0]))
    repo.publish("2.0", ["canary"])
    repo.publish("3.0", ["broad"])
    r = await puller.pull_once()
    assert (r.installed, r.refused, r.error) == ([(MID, "2.0", "shadow")], [], None)
    s = reg.read_state()[MID]
    assert (s.active, s.shadow, s.versions) == ("1.0", "2.0", ["1.0", "2.0"])
    assert (await puller.pull_once()).installed == []  # already installed: nothing fetched
    repo.release("3.0", ["canary", "early", "broad"])  # the publisher widens the release
    assert (await puller.pull_once()).installed == [(MID, "3.0", "shadow")]
    s = reg.read_state()[MID]
    assert (s.active, s.shadow) == ("1.0", "3.0")


async def test_other_ring_and_other_model_are_not_taken(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path]
) -> None:
    reg, puller = gateway(tmp_path / "state", keys[1], repository=str(repo.root), ring="broad")
    repo.publish("2.0", ["canary", "early"])
    repo.entries.append({"model_id": "other", "version": "1", "path": "x/1", "rings": ["broad"]})
    repo._write()
    r = await puller.pull_once()
    assert (r.installed, r.refused, r.error) == ([], [], None)
    assert reg.read_state() == {}


async def test_https_repository_promotes_through_the_running_controller_and_refuses_tampered(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path], https: tuple[str, Path]
) -> None:
    url, cert = https
    state = tmp_path / "state"
    rig = Rig(state, FakeClock(), rollback={"period_s": 60, "min_frames": 20})
    rig.cfg = config(
        state,
        trusted_keys=[str(keys[1])],
        rollback={"period_s": 60, "min_frames": 20},
        updates={
            "repository": url,
            "ca_file": str(cert),
            "ring": "early",
            "on_arrival": "promote",
            "interval_s": 600,
        },
    )
    rig.registry = Registry(rig.cfg.models, state)
    rig.registry.install(signed(tmp_path / "local", "1.0", keys[0]))
    repo.publish("1.5", ["canary", "early"], tamper=True)
    rig.start()
    assert rig.ctl is not None
    assert rig.ctl.puller is not None
    task = asyncio.create_task(rig.ctl.run())
    try:
        await rig.clock.wait_for_sleepers(1)  # one pull and one tick done
        assert rig.ctl.summary()[MID]["active"] == "1.0"  # type: ignore[index]
        refused = rig.ctl.puller.read_refused()
        assert "sha256" in refused[f"{MID}/1.5"]
        await rig.feed_all(40)
        assert {s.model_version for s in rig.active_scores()} == {"1.0"}

        repo.publish("2.0", ["early", "broad"])
        repo.publish("3.0", ["canary"])
        rig.clock.advance(600)  # the next pull is due
        await rig.clock.wait_for_sleepers(1)
        assert rig.ctl.puller.refused == 1  # the tampered version is not fetched again
        s = rig.registry.read_state()[MID]
        assert (s.active, s.versions) == ("2.0", ["1.0", "2.0"])
        summary = rig.ctl.summary()[MID]
        assert summary["active"] == "2.0"
        assert summary["on_probation"]
        await rig.feed_all(40)
        assert [s.model_version for s in rig.active_scores()[40:]] == ["2.0"] * 40
        assert rig.ctl.status()["updates"]["installed"] == 1  # type: ignore[index]
        scrape = render(lambda: {"model_lifecycle": rig.ctl.status() if rig.ctl else {}}).decode()
        assert 'pdm_model_update_versions_total{outcome="installed"} 1.0' in scrape
        assert 'pdm_model_update_versions_total{outcome="refused"} 1.0' in scrape
        assert 'pdm_model_update_rounds_total{result="ok"} 2.0' in scrape
    finally:
        task.cancel()
        await rig.close()


async def test_tampered_only_release_keeps_the_active_model(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path], https: tuple[str, Path]
) -> None:
    url, cert = https
    reg, puller = gateway(
        tmp_path / "state", keys[1], repository=url, ca_file=str(cert), on_arrival="promote"
    )
    reg.install(signed(tmp_path / "local", "1.0", keys[0]))
    repo.publish("2.0", ["broad"], tamper=True)
    r = await puller.pull_once()
    assert r.installed == []
    assert r.error is None
    assert r.refused[0][:2] == (MID, "2.0")
    assert "sha256" in r.refused[0][2]
    s = reg.read_state()[MID]
    assert (s.active, s.versions) == ("1.0", ["1.0"])
    assert (await puller.pull_once()).refused == []  # recorded: never retried


async def test_untrusted_certificate_and_unreachable_repositories_change_nothing(
    tmp_path: Path,
    repo: Repo,
    keys: tuple[Path, Path],
    https: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo.publish("2.0", ["broad"])
    url, _ = https
    for i, updates in enumerate(
        [
            {"repository": url},  # the self-signed certificate is not trusted
            {"repository": f"https://127.0.0.1:{free_port()}/repo"},  # nothing listens
            {"repository": str(tmp_path / "missing")},
        ]
    ):
        state = tmp_path / f"state{i}"
        reg, puller = gateway(state, keys[1], **updates)
        reg.install(signed(tmp_path / f"local{i}", "1.0", keys[0]))
        before = reg.read_state()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="gateway.inference.updates"):
            for _ in range(3):
                r = await puller.pull_once()
                assert r.error is not None
                assert r.installed == []
        assert len(caplog.records) == 1  # logged once per state change
        assert (puller.rounds, puller.failed_rounds) == (3, 3)
        status = {"model_lifecycle": {"updates": puller.status()}}
        scrape = render(lambda status=status: status).decode()
        assert 'pdm_model_update_rounds_total{result="failed"} 3.0' in scrape
        assert reg.read_state() == before


async def test_bad_index_changes_nothing_and_recovery_is_logged(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    reg, puller = gateway(tmp_path / "state", keys[1], repository=str(repo.root))
    (repo.root / "index.json").write_text('{"models": [{"model_id": "test-model"}]}')
    r = await puller.pull_once()
    assert r.error is not None
    assert "bad index" in r.error
    assert puller.failing
    assert reg.read_state() == {}
    repo.entries = [{"model_id": MID, "version": "2.0", "path": "../etc", "rings": ["broad"]}]
    repo._write()
    r = await puller.pull_once()
    assert r.error is not None
    assert "unsafe path" in r.error
    repo.entries = []
    repo.publish("2.0", ["broad"])
    with caplog.at_level(logging.WARNING, logger="gateway.inference.updates"):
        r = await puller.pull_once()
    assert r.error is None
    assert puller.failing is None
    assert any("reachable again" in rec.message for rec in caplog.records)
    s = reg.read_state()[MID]
    assert s.active == "2.0"  # the first version of a model becomes active


def test_cli_pull_one_round(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, trusted_keys=[str(keys[1])])
    text = cfg.read_text() + f'[models.assets]\nm1 = "{MID}"\n'
    text += f'[models.updates]\nrepository = "{repo.root}"\nring = "canary"\n'
    cfg.write_text(text)
    repo.publish("1.0", ["canary"])
    repo.publish("2.0", ["canary"], tamper=True)
    assert main(["models", "pull", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "installed test-model 1.0 as active" in out
    assert "refused test-model 2.0" in out
    assert "sha256" in out
    assert main(["models", "pull", "--config", str(cfg)]) == 0
    assert "no new versions" in capsys.readouterr().out
    (repo.root / "index.json").write_text("not json")
    assert main(["models", "pull", "--config", str(cfg)]) == 1
    assert "models unchanged" in capsys.readouterr().err
    leftovers = list((tmp_path / "state" / "models").glob(".incoming*"))
    assert leftovers == []  # downloads are removed whatever the outcome


def test_bad_updates_config_fails_at_load_with_the_key_path(tmp_path: Path) -> None:
    for updates, key in [
        ({"repository": "http://models.example.com"}, "models.updates.repository"),
        ({"repository": "repo", "ring": "everyone"}, "models.updates.ring"),
        ({"repository": "repo", "on_arrival": "install"}, "models.updates.on_arrival"),
    ]:
        with pytest.raises(ValidationError) as exc:
            config(tmp_path, updates=updates)
        locs = {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}
        assert key in locs


async def test_relative_directory_repository_is_inside_the_state_dir(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    repo = Repo(tmp_path / "state" / "repo", keys[0])
    repo.publish("1.0", ["broad"])
    reg, puller = gateway(tmp_path / "state", keys[1], repository="repo")
    assert (await puller.pull_once()).installed == [(MID, "1.0", "active")]
    assert reg.read_state()[MID].active == "1.0"


async def test_index_arrival_overrides_and_a_failed_download_is_retried(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path]
) -> None:
    reg, puller = gateway(tmp_path / "state", keys[1], repository=str(repo.root))
    reg.install(signed(tmp_path / "local", "1.0", keys[0]))
    repo.publish("2.0", ["broad"])
    repo.entries[-1]["arrival"] = "promote"
    repo._write()
    model = repo.root / str(repo.entries[-1]["path"]) / "model.tflite"
    model.rename(model.with_suffix(".away"))  # the repository is half-uploaded
    r = await puller.pull_once()
    assert r.error is not None
    assert "model.tflite" in r.error
    assert (r.installed, r.refused, puller.read_refused()) == ([], [], {})
    assert reg.read_state()[MID].versions == ["1.0"]
    model.with_suffix(".away").rename(model)
    assert (await puller.pull_once()).installed == [(MID, "2.0", "active")]
    s = reg.read_state()[MID]
    assert (s.active, s.history) == ("2.0", ["1.0"])


async def test_delay_takes_a_version_only_after_it_was_seen_that_long(
    tmp_path: Path, repo: Repo, keys: tuple[Path, Path]
) -> None:
    state = tmp_path / "state"
    clock = FakeClock()
    cfg = config(
        state,
        trusted_keys=[str(keys[1])],
        updates={"repository": str(repo.root), "ring": "early", "delay_s": 3600},
    )
    reg = Registry(cfg.models, state)
    reg.install(signed(tmp_path / "local", "1.0", keys[0]))
    repo.publish("2.0", ["canary", "early"])
    puller = Puller(cfg.models, state, reg, clock)
    assert (await puller.pull_once()).installed == []  # first seen now
    clock.advance(3599)
    restarted = Puller(cfg.models, state, reg, clock)  # the first sighting survives a restart
    assert (await restarted.pull_once()).installed == []
    clock.advance(1)
    assert (await restarted.pull_once()).installed == [(MID, "2.0", "shadow")]
