"""Bandwidth-aware forwarding, put together: the raw tap on ``samples``, summaries and snapshots
derived on the way into the store, the uplink's detail selection, and the byte accounting.

``derive``/``flush`` are the store writer's hooks (``gateway.store.writer.Deriver``): they
return extra rows (``summary``, ``snapshot``) to journal with each batch. ``status`` reports,
per asset and in total, bytes collected (raw samples read), forwarded (line protocol the uplink
had accepted) and escalated (snapshot request bodies the endpoint accepted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.core.records import FeatureFrame
from gateway.forwarding.config import ForwardingConfig
from gateway.forwarding.ring import RawTap
from gateway.forwarding.selection import DetailSelector
from gateway.forwarding.snapshot import SnapshotCapture
from gateway.forwarding.summary import Summarizer
from gateway.store.journal import Row


class ForwardingHub:
    """``assets`` maps each asset to its channels; ``waveforms`` are the waveform channels."""

    def __init__(
        self, cfg: ForwardingConfig, assets: Mapping[str, Sequence[str]], waveforms: set[str]
    ) -> None:
        self.cfg = cfg
        self.assets = list(assets)
        asset_of = {ch: a for a, chans in assets.items() for ch in chans}
        ringed = {
            ch
            for ch in waveforms
            if ch in asset_of and cfg.for_asset(asset_of[ch]).snapshot.enabled
        }
        self.tap = RawTap(asset_of, cfg.ring_s, ringed)
        self.summarizer = Summarizer(
            {
                a: cfg.for_asset(a).summary_interval_s
                for a in assets
                if cfg.for_asset(a).mode == "summary"
            }
        )
        self.snapshots = SnapshotCapture(cfg, {a: list(c) for a, c in assets.items()}, self.tap)
        self.selector = DetailSelector(cfg)

    async def derive(self, records: Sequence[object]) -> list[Row]:
        """Summaries closed and snapshots triggered by ``records`` (the store writer's batch)."""
        rows: list[Row] = []
        if self.summarizer.interval_ns:  # (no asset in summary mode: nothing to add up)
            for r in records:
                if isinstance(r, FeatureFrame):
                    row = self.summarizer.add(r)
                    if row is not None:
                        rows.append(row)
        if self.snapshots.any_enabled:
            rows += await self.snapshots.capture(list(records))
        return rows

    def flush(self) -> list[Row]:
        """Summaries of the intervals still open (at shutdown)."""
        return self.summarizer.flush()

    def status(
        self,
        forwarded: Mapping[str, int],
        escalated: Mapping[str, int],
        skipped: Mapping[str, int],
    ) -> dict[str, object]:
        """Byte counters per asset and in total; ``forwarded``/``escalated`` come from the
        uplink and the escalation sink (bytes per asset), ``skipped`` (records the policy
        kept on site: unselected detail and snapshots, per asset) from the uplink."""
        collected = self.tap.collected_bytes
        names = sorted({*self.assets, *collected, *forwarded, *escalated} - {""})
        per: dict[str, dict[str, object]] = {}
        for a in names:
            per[a] = {
                "mode": self.cfg.for_asset(a).mode,
                "collected_bytes": collected.get(a, 0),
                "forwarded_bytes": forwarded.get(a, 0),
                "escalated_bytes": escalated.get(a, 0),
                "records_kept_on_site": skipped.get(a, 0),
                "snapshots": self.snapshots.captured.get(a, 0),
            }
        total = {
            k: sum(int(v[k]) for v in per.values())  # type: ignore[call-overload]
            for k in ("collected_bytes", "forwarded_bytes", "escalated_bytes")
        }
        return {"assets": per, "total": total, "summaries": self.summarizer.emitted}
