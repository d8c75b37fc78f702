"""Typed configuration: the root schema and the TOML loader."""

from gateway.config.loader import load_config, parse_config
from gateway.config.schema import GatewayConfig

__all__ = ["GatewayConfig", "load_config", "parse_config"]
