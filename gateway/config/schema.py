"""Root configuration: composes the schema each stage defines next to its code, and checks
references between sections (device -> channel, asset -> channel, rule -> asset)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.alerts.config import AlertsConfig, rule_channel_errors
from gateway.collectors.modbus.config import ModbusDevice
from gateway.collectors.opcua.config import OpcUaDevice, check_opcua_device
from gateway.config.plant import Asset, Channel
from gateway.core.configbase import StrictModel
from gateway.dsp.config import DspConfig
from gateway.forwarding.config import ForwardingConfig, forwarding_errors
from gateway.inference.config import ModelsConfig
from gateway.opcua_server.config import OpcUaServerConfig
from gateway.runtime.config import RuntimeConfig
from gateway.store.config import StoreConfig
from gateway.uplink.config import UplinkConfig

ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class GatewaySection(StrictModel):
    """Identity and files of this gateway. A relative ``state_dir`` is relative to the config
    file's directory."""

    name: str = Field("pdm-gateway", min_length=1)
    state_dir: Path = Path("state")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Devices(StrictModel):
    modbus: dict[str, ModbusDevice] = Field(default_factory=dict)
    opcua: dict[str, OpcUaDevice] = Field(default_factory=dict)


class GatewayConfig(StrictModel):
    """The whole gateway, as one TOML file describes it."""

    gateway: GatewaySection = GatewaySection()
    devices: Devices = Devices()
    channels: dict[str, Channel] = Field(default_factory=dict)
    assets: dict[str, Asset] = Field(default_factory=dict)
    dsp: DspConfig = DspConfig()
    models: ModelsConfig = ModelsConfig()
    alerts: AlertsConfig = AlertsConfig()
    store: StoreConfig = StoreConfig()
    uplink: UplinkConfig = UplinkConfig()
    forwarding: ForwardingConfig = ForwardingConfig()
    opcua_server: OpcUaServerConfig = OpcUaServerConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    def asset_of(self, channel: str) -> str:
        """The asset a channel belongs to (every channel belongs to exactly one, see ``check``)."""
        for name, asset in self.assets.items():
            if channel in asset.channels:
                return name
        raise KeyError(channel)

    def store_path(self) -> Path:
        return self.gateway.state_dir / self.store.path


def cross_check(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """Errors in references between sections, as ``(dotted.key.path, reason)``."""
    import re

    errors: list[tuple[str, str]] = []
    id_re = re.compile(ID_PATTERN)
    for section, names in (
        ("channels", cfg.channels),
        ("assets", cfg.assets),
        ("devices.modbus", cfg.devices.modbus),
        ("devices.opcua", cfg.devices.opcua),
    ):
        for name in names:
            if not id_re.match(name):
                errors.append((f"{section}.{name}", "ids are letters, digits, '_' or '-'"))

    fed_by: dict[str, str] = {}
    devices: list[tuple[str, ModbusDevice | OpcUaDevice]] = [
        *((f"devices.modbus.{n}", d) for n, d in cfg.devices.modbus.items()),
        *((f"devices.opcua.{n}", d) for n, d in cfg.devices.opcua.items()),
    ]
    for dev_path, dev in devices:
        for key, ch in dev.channels():
            path = f"{dev_path}.{key}"
            if ch not in cfg.channels:
                errors.append((path, f"unknown channel {ch!r}"))
                continue
            if ch in fed_by:
                errors.append((path, f"channel {ch!r} is already fed by {fed_by[ch]}"))
            fed_by[ch] = path
            tag_unit = (
                getattr(dev.tags[int(key.split(".")[1])], "unit", None)
                if (isinstance(dev, ModbusDevice) and key.startswith("tags."))
                else None
            )
            if tag_unit is not None and tag_unit != cfg.channels[ch].unit:
                errors.append(
                    (
                        f"{dev_path}.{key.rsplit('.', 1)[0]}.unit",
                        f"{tag_unit!r} differs from channel {ch!r} unit {cfg.channels[ch].unit!r}",
                    )
                )
            waveform_source = key.startswith("waveforms.") or (
                isinstance(dev, OpcUaDevice)
                and dev.nodes[int(key.split(".")[1])].kind == "waveform"
            )
            if waveform_source != cfg.channels[ch].is_waveform:
                want = "a waveform" if cfg.channels[ch].is_waveform else "a scalar"
                errors.append(
                    (path, f"channel {ch!r} is {cfg.channels[ch].kind}: needs {want} source")
                )

    for name, odev in cfg.devices.opcua.items():
        errors += check_opcua_device(
            f"devices.opcua.{name}",
            odev,
            {c: ch.unit for c, ch in cfg.channels.items()},
            {c: ch.sample_rate_hz for c, ch in cfg.channels.items()},
        )

    owner: dict[str, str] = {}
    for name, a in cfg.assets.items():
        for i, ch in enumerate(a.channels):
            if ch not in cfg.channels:
                errors.append((f"assets.{name}.channels.{i}", f"unknown channel {ch!r}"))
            elif ch in owner:
                errors.append(
                    (
                        f"assets.{name}.channels.{i}",
                        f"channel {ch!r} already in asset {owner[ch]!r}",
                    )
                )
            else:
                owner[ch] = name
        if a.speed_channel is not None:
            sc = cfg.channels.get(a.speed_channel)
            if sc is None:
                errors.append(
                    (f"assets.{name}.speed_channel", f"unknown channel {a.speed_channel!r}")
                )
            elif sc.kind != "speed" or sc.unit not in ("Hz", "rpm"):
                errors.append(
                    (
                        f"assets.{name}.speed_channel",
                        f"{a.speed_channel!r} must be a speed channel in Hz or rpm",
                    )
                )
    for name, dev in cfg.devices.modbus.items():
        for i, w in enumerate(dev.waveforms):
            fs = cfg.channels[w.channel].sample_rate_hz if w.channel in cfg.channels else None
            if fs and w.period_s * fs > w.ring_length / 2:
                errors.append(
                    (
                        f"devices.modbus.{name}.waveforms.{i}.period_s",
                        f"{w.period_s} s fills {w.period_s * fs:.0f} of the "
                        f"{w.ring_length}-sample ring: poll at least every "
                        f"{w.ring_length / 2 / fs:.3g} s (half the ring) to lose nothing",
                    )
                )
    bands = [("dsp.velocity_band_hz", cfg.dsp.velocity_band_hz)]
    if cfg.dsp.envelope_band_hz:
        bands.append(("dsp.envelope_band_hz", cfg.dsp.envelope_band_hz))
    for ch, c in cfg.channels.items():
        if c.sample_rate_hz is None:
            continue
        for key, (_, hi) in bands:
            if hi > c.sample_rate_hz / 2:  # (energy bands past Nyquist are simply empty)
                errors.append(
                    (
                        key,
                        f"upper edge {hi} Hz is above channel {ch!r}'s Nyquist "
                        f"frequency {c.sample_rate_hz / 2} Hz",
                    )
                )
    for ch in cfg.channels:
        if ch not in owner:
            errors.append(
                (f"channels.{ch}", "channel belongs to no asset (list it in an asset's 'channels')")
            )
        if ch not in fed_by:
            errors.append((f"channels.{ch}", "no device feeds this channel"))

    for name, rule in cfg.alerts.rules.items():
        if rule.asset not in cfg.assets:
            errors.append((f"alerts.rules.{name}.asset", f"unknown asset {rule.asset!r}"))
        if rule.channel is not None and rule.channel not in cfg.channels:
            errors.append((f"alerts.rules.{name}.channel", f"unknown channel {rule.channel!r}"))
        errors += rule_channel_errors(name, rule, cfg.assets, cfg.channels)
    for asset in cfg.models.assets:
        if asset not in cfg.assets:
            errors.append((f"models.assets.{asset}", f"unknown asset {asset!r}"))
    errors += forwarding_errors(cfg.forwarding, set(cfg.assets))
    esc, influx = cfg.forwarding.escalation, cfg.uplink.influxdb
    if esc is not None and influx is not None and esc.name == influx.name:
        # each sink keeps its own cursor in the store, by name
        errors.append(
            ("forwarding.escalation.name", f"{esc.name!r} is the uplink's name too: use another")
        )
    return errors
