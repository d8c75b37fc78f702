"""What the server shows: assets, their channels and each channel's features with units,
derived from the gateway config the same way the DSP names its features."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.plant import Asset, Channel
from gateway.dsp import features as F
from gateway.dsp.config import DspConfig
from gateway.dsp.extract import ChannelExtractor


@dataclass(frozen=True)
class ChannelLayout:
    name: str
    features: tuple[tuple[str, str], ...]  # (feature name, unit)


@dataclass(frozen=True)
class AssetLayout:
    name: str
    channels: tuple[ChannelLayout, ...]


def layout_from_config(
    assets: dict[str, Asset], channels: dict[str, Channel], dsp: DspConfig
) -> tuple[AssetLayout, ...]:
    """Every asset with every channel's features (names and units as the DSP emits them)."""
    out = []
    for a_name, asset in assets.items():
        chans = []
        for ch in asset.channels:
            c = channels[ch]
            if c.is_waveform:
                ex = ChannelExtractor(c, asset, dsp)
                feats = tuple(zip(ex.names, ex.units, strict=True))
            else:
                names = tuple(n for n, _ in F.SCALAR)
                feats = tuple(zip(names, F.units_for(F.SCALAR, c.unit), strict=True))
            chans.append(ChannelLayout(ch, feats))
        out.append(AssetLayout(a_name, tuple(chans)))
    return tuple(out)


#: UNECE Rec 20 common codes of the units the gateway uses (OPC UA EUInformation.UnitId)
UNECE = {
    "g": "K40",  # standard acceleration of free fall
    "mm/s": "C16",
    "um": "4H",
    "Hz": "HTZ",
    "rpm": "RPM",
    "degC": "CEL",
    "degC/min": "",
    "Pa": "PAL",
    "dB": "2N",
    "dB(A)": "2N",
    "1": "C62",
}


def unece_unit_id(unit: str) -> int:
    """OPC UA UnitId of a unit (Part 8: the UNECE code's bytes), -1 when it has none."""
    code = UNECE.get(unit, "")
    if not code:
        return -1
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value
