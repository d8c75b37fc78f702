"""Records for store and uplink tests: every one has a distinct series key and timestamp, and
carries its index so what arrives upstream can be matched to what was stored."""

from __future__ import annotations

import numpy as np

from gateway.core.records import AlertEvent, AlertState, FeatureFrame, Score, Severity
from gateway.store.codec import StoreRecord

T0 = 1_700_000_000_000_000_000
STEP_NS = 10_000_000  # 10 ms: more than the server's 1 ms deduplication interval
CHANNELS = ("m1_vib", "m1_temp", "m2_vib", "m2_temp")


def frame(i: int, asset: str | None = None, width: int = 8) -> FeatureFrame:
    """Feature frame number ``i``: channel ``CHANNELS[i % 4]``, feature ``i`` = i."""
    ch = CHANNELS[i % len(CHANNELS)]
    names = ("i", *(f"f{k}" for k in range(width - 1)))
    values = np.array([float(i), *(0.5 * k + i % 7 for k in range(width - 1))])
    return FeatureFrame(
        asset=asset or ch[:2],
        channel=ch,
        start_ts_ns=T0 + i * STEP_NS,
        end_ts_ns=T0 + i * STEP_NS + 100_000_000,
        gateway_ts_ns=T0 + i * STEP_NS + 200_000_000,
        schema_version="v1",
        names=names,
        units=("",) * width,
        values=values,
    )


def score(i: int) -> Score:
    return Score("m1", T0 + i * STEP_NS, "iforest", "1.2.0", float(i), 0.5, channel="m1_vib")


def alert(i: int, category: str = "machine") -> AlertEvent:
    return AlertEvent(
        alert_id=f"a{i}",
        asset="m2",
        rule="vib_high",
        state=AlertState.RAISED,
        severity=Severity.ALARM,
        ts_ns=T0 + i * STEP_NS,
        message=f"vibration high ({i})",
        model_version="1.2.0",
        category=category,
        channel="m2_vib" if category == "sensor" else "",
    )


def mixed(n: int, start: int = 0) -> list[StoreRecord]:
    """``n`` records: features, with a score every 10th and an alert every 50th index."""
    out: list[StoreRecord] = []
    for i in range(start, start + n):
        out.append(frame(i))
        if i % 10 == 0:
            out.append(score(i))
        if i % 50 == 0:
            out.append(alert(i, "sensor" if i % 100 else "machine"))
    return out
