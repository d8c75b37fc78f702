"""``pdm-gateway models install|list|promote|rollback|remove|pull|sign|keygen``.

Registry commands take the gateway's ``--config`` (its state directory and ``[models]``); a
running gateway of that config follows their changes within ``models.watch_interval_s``.
``sign`` and ``keygen`` are the publisher's side and need no config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.core.errors import ConfigError
from gateway.inference import crypto, signing
from gateway.inference.manifest import MANIFEST_NAME, read_model
from gateway.inference.registry import RefusedError, Registry, UnknownError

COMMANDS = ("install", "list", "promote", "rollback", "remove", "pull", "sign", "keygen")


def add_registry_parsers(msub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def cfg_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, required=True, help="the gateway's config")

    ins = msub.add_parser("install", help="verify a model and add it to the registry")
    ins.add_argument("path", type=Path, help="a model directory, its manifest.json or .tflite")
    cfg_arg(ins)
    role = ins.add_mutually_exclusive_group()
    role.add_argument("--promote", action="store_true", help="make it the active version")
    role.add_argument("--shadow", action="store_true", help="run it in shadow")

    ls = msub.add_parser("list", help="installed versions, active/shadow, score summary")
    cfg_arg(ls)
    ls.add_argument("--json", action="store_true")

    pro = msub.add_parser("promote", help="make a version active (or shadow)")
    pro.add_argument("model_id")
    pro.add_argument("version")
    cfg_arg(pro)
    pro.add_argument("--shadow", action="store_true", help="run it in shadow instead")
    pro.add_argument("--force", action="store_true", help="promote a rejected version")

    rb = msub.add_parser("rollback", help="make the previous version active again")
    rb.add_argument("model_id")
    cfg_arg(rb)

    rm = msub.add_parser("remove", help="delete a version that is neither active nor shadow")
    rm.add_argument("model_id")
    rm.add_argument("version", nargs="?", default=None)
    rm.add_argument("--shadow", action="store_true", help="stop the shadow run instead")
    cfg_arg(rm)

    pl = msub.add_parser("pull", help="one round of pulled updates from models.updates")
    cfg_arg(pl)

    sg = msub.add_parser("sign", help="sign a model directory's manifest (publisher side)")
    sg.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    sg.add_argument("dir", type=Path)

    kg = msub.add_parser("keygen", help="create a signing key pair or an encryption key")
    kg.add_argument("out", type=Path, help="signing: OUT.key and OUT.pub; --encryption: OUT")
    kg.add_argument("--encryption", action="store_true", help="an AES-256 key file (mode 0600)")


def _registry(config: Path) -> Registry:
    from gateway.config.loader import load_config

    cfg = load_config(config)
    return Registry(cfg.models, cfg.gateway.state_dir)


def main_registry(args: argparse.Namespace) -> int:
    """Run one registry command; 0 done, 1 refused or unknown, 2 bad config or input."""
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # one 'key.path: reason' line each
        return 2
    except (RefusedError, UnknownError, FileExistsError) as exc:
        print(f"pdm-gateway models {args.models_command}: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.models_command
    if cmd == "keygen":
        if args.encryption:
            crypto.generate_key(args.out)
            print(f"wrote {args.out} (mode 0600); set models.encryption_key to it")
        else:
            priv, pub = args.out.with_suffix(".key"), args.out.with_suffix(".pub")
            kid = signing.generate(priv, pub)
            print(f"wrote {priv} (private, mode 0600) and {pub} (key id {kid}); list the .pub")
            print("in models.trusted_keys of each gateway, keep the .key with the publisher")
        return 0
    if cmd == "sign":
        manifest, _ = read_model(args.dir)  # the sha256 is checked before signing
        signed = signing.sign(manifest, signing.load_private(args.key))
        tmp = args.dir / (MANIFEST_NAME + ".tmp")
        tmp.write_text(signed.dump())
        tmp.replace(args.dir / MANIFEST_NAME)
        print(f"signed {signed.model_id} {signed.version}: {signed.signature}")
        return 0
    if cmd == "pull":
        return _pull(args.config)
    reg = _registry(args.config)
    if cmd == "install":
        m = reg.install(args.path, promote=args.promote, shadow=args.shadow)
        s = reg.read_state()[m.model_id]
        role = "active" if s.active == m.version else "shadow" if s.shadow == m.version else ""
        where = "encrypted" if reg.cfg.encryption_key else "stored"
        print(f"installed {m.model_id} {m.version} ({where}){' as ' + role if role else ''}")
    elif cmd == "promote":
        if args.shadow:
            reg.set_shadow(args.model_id, args.version)
            print(f"{args.model_id} {args.version} runs in shadow")
        else:
            prev = reg.promote(args.model_id, args.version, force=args.force)
            print(f"{args.model_id} {args.version} active (was {prev or 'none'})")
    elif cmd == "rollback":
        print(f"{args.model_id} {reg.rollback(args.model_id)} active again")
    elif cmd == "remove":
        if args.shadow:
            reg.set_shadow(args.model_id, None)
            print(f"{args.model_id}: shadow run stopped")
        elif args.version is None:
            raise RefusedError("give a VERSION to remove, or --shadow")
        else:
            reg.remove(args.model_id, args.version)
            print(f"removed {args.model_id} {args.version}")
    elif cmd == "list":
        _list(reg, args.json)
    return 0


def _pull(config: Path) -> int:
    """One round of pulled updates; 0 when the repository was read, 1 when it was not."""
    import asyncio

    from gateway.config.loader import load_config
    from gateway.inference.updates import Puller

    cfg = load_config(config)
    if cfg.models.updates is None:
        raise RefusedError("models.updates is not configured")
    reg = Registry(cfg.models, cfg.gateway.state_dir)
    r = asyncio.run(Puller(cfg.models, cfg.gateway.state_dir, reg).pull_once())
    for mid, v, role in r.installed:
        print(f"installed {mid} {v}{' as ' + role if role else ''}")
    for mid, v, why in r.refused:
        print(f"refused {mid} {v}: {why}")
    if r.error is not None:
        print(f"pdm-gateway models pull: {r.error}; models unchanged", file=sys.stderr)
        return 1
    if not r.installed and not r.refused:
        print("no new versions for this gateway's ring")
    return 0


def _list(reg: Registry, as_json: bool) -> None:
    state, stats = reg.read_state(), reg.read_stats()
    if as_json:
        doc = {
            mid: {
                "active": s.active,
                "shadow": s.shadow,
                "versions": s.versions,
                "history": s.history,
                "rejected": s.rejected,
                "summary": stats.get(mid, {}),
            }
            for mid, s in state.items()
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    if not state:
        print("no models installed")
    for mid, s in sorted(state.items()):
        print(mid)
        summary = stats.get(mid, {})
        versions = summary.get("versions", {}) if isinstance(summary, dict) else {}
        for v in s.versions:
            mark = "active" if v == s.active else "shadow" if v == s.shadow else ""
            if v == s.active and isinstance(summary, dict) and summary.get("on_probation"):
                mark = "active (on probation)"
            if v in s.rejected:
                mark = f"rejected: {s.rejected[v]}"
            print(f"  {v:<20} {mark}")
            for role, st in (versions.get(v) or {}).items():
                if st.get("scored"):
                    print(
                        f"      as {role}: {st['scored']} scored, would-be alert rate "
                        f"{st['alert_rate']:.2%}, p50 {st.get('p50', 0):.4g} "
                        f"p95 {st.get('p95', 0):.4g} p99 {st.get('p99', 0):.4g} "
                        f"(threshold {st['threshold']:.4g})"
                    )
