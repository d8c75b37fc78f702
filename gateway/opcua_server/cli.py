"""``pdm-gateway opcua hash-password``: print the hash of a password for ``[opcua_server.users]``.

The password is asked twice on a terminal, or read as the first line of standard input
otherwise (``echo -n secret | pdm-gateway opcua hash-password``); it is never an argument, so it
stays out of shell histories and process lists.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.opcua_server.passwords import hash_password


def add_hash_password(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "hash-password", help="hash a password for opcua_server.users (reads it from stdin)"
    )


def hash_password_main(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            print("pdm-gateway opcua hash-password: the passwords differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if not pw:
        print("pdm-gateway opcua hash-password: empty password", file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0
