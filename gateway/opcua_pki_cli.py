"""``pdm-gateway opcua trust FILE | untrust REF | list``: manage the OPC UA trust store.

The store is ``<gateway.state_dir>/pki`` of the config given with ``--config FILE``, or the
directory given with ``--pki DIR``. Exit codes: 0 done, 1 the certificate or reference is wrong,
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``opcua`` command (with ``trust``, ``untrust``, ``list``) to ``subparsers``."""
    store = argparse.ArgumentParser(add_help=False)
    where = store.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="gateway config: the store is state_dir/pki")
    where.add_argument("--pki", type=Path, help="the store's directory")

    opcua = subparsers.add_parser("opcua", help="OPC UA certificates: trust, untrust, list")
    sub = opcua.add_subparsers(dest="opcua_command", required=True)
    trust = sub.add_parser(
        "trust", parents=[store], help="trust a peer certificate (DER or PEM file)"
    )
    trust.add_argument("file", type=Path)
    untrust = sub.add_parser(
        "untrust", parents=[store], help="remove a trusted certificate by sha1 or file name"
    )
    untrust.add_argument("ref")
    sub.add_parser("list", parents=[store], help="list trusted and rejected certificates")
    from gateway.opcua_server.cli import add_hash_password

    add_hash_password(sub)


def pki_root(args: argparse.Namespace) -> Path:
    """The store directory named by ``--pki`` or ``--config`` (``ConfigError`` if bad config)."""
    if args.pki is not None:
        return Path(args.pki)
    from gateway.config.loader import load_config

    cfg = load_config(args.config)
    return cfg.gateway.state_dir / "pki"


def main(args: argparse.Namespace) -> int:
    """Run the parsed ``opcua`` command; print results to stdout and errors to stderr."""
    from gateway.core.errors import ConfigError
    from gateway.opcua_pki import Pki, PkiError

    if args.opcua_command == "hash-password":
        from gateway.opcua_server.cli import hash_password_main

        return hash_password_main(args)
    try:
        pki = Pki(pki_root(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # one 'key.path: reason' line each
        return EXIT_CONFIG
    try:
        if args.opcua_command == "trust":
            print(f"trusted: {pki.trust(args.file)}")
        elif args.opcua_command == "untrust":
            print(f"removed: {pki.untrust(args.ref)}")
        else:
            for info in pki.list():
                print(
                    f"{'trusted ' if info.trusted else 'rejected'}  {info.thumbprint}  "
                    f"{info.not_after:%Y-%m-%d}  {info.subject}  {info.application_uri or '-'}"
                    f"  {info.path}"
                )
    except PkiError as exc:
        print(f"pdm-gateway opcua {args.opcua_command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
