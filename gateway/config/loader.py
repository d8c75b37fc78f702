"""Load a TOML config file: parse, interpolate ``${ENV_VAR}``, validate, cross-check.

Every problem is collected and raised together as one ``ConfigError`` whose ``errors`` are
``(dotted.key.path, reason)`` pairs; nothing is validated later at poll time.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.schema import GatewayConfig, cross_check
from gateway.core.errors import ConfigError

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def interpolate(
    raw: Any, env: Mapping[str, str], path: str = ""
) -> tuple[Any, list[tuple[str, str]]]:
    """Replace ``${NAME}`` in every string with ``env[NAME]`` (``$$`` gives a literal ``$``).

    Returns the new tree and the errors for unset variables. Values are never echoed in errors.
    """
    errors: list[tuple[str, str]] = []

    def walk(node: Any, here: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{here}.{k}" if here else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{here}.{i}") for i, v in enumerate(node)]
        if isinstance(node, str) and "$" in node:

            def sub(m: re.Match[str]) -> str:
                if m.group(0) == "$$":
                    return "$"
                name = m.group(1)
                if name not in env:
                    errors.append((here, f"environment variable {name} is not set"))
                    return ""
                return env[name]

            return _ENV_RE.sub(sub, node)
        return node

    return walk(raw, path), errors


def format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic errors as ``(dotted.key.path, reason)``, in document order."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        reason = _REASONS.get(err["type"], err["msg"])
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        path = format_loc(err["loc"])
        # a model-level check may name the sub-key itself ("tags.0.poll_group: ...")
        head, sep, rest = reason.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", head):
            path, reason = f"{path}.{head}" if path else head, rest
        out.append((path, reason))
    return out


def parse_config(
    text: str, *, base_dir: Path, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> GatewayConfig:
    """Validate TOML ``text``; relative paths are resolved against ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"{source}: invalid TOML: {exc}")], source) from None
    raw, errors = interpolate(raw, os.environ if env is None else env)
    if errors:
        raise ConfigError(errors, source)
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc), source) from None
    errors = cross_check(cfg)
    if errors:
        raise ConfigError(errors, source)
    state_dir = cfg.gateway.state_dir
    if not state_dir.is_absolute():
        state_dir = (base_dir / state_dir).resolve()
        cfg = cfg.model_copy(
            update={"gateway": cfg.gateway.model_copy(update={"state_dir": state_dir})}
        )
    return cfg


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the config file at ``path``. Raises ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"{p}: no such file")], str(p)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"{p}: cannot read: {exc}")], str(p)) from None
    return parse_config(text, base_dir=p.resolve().parent, env=env, source=str(p))
