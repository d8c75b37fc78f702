"""Prometheus text exposition of the pipeline's status snapshot (``/metrics``).

Series (all prefixed ``pdm_``): per device its state, breaker, mean read latency, reads and
errors by class, samples lost; per channel the framing gaps; per queue depth, capacity,
accepted and dropped; event-loop lag; per stage restarts; the store's written, pending and
write errors (plus backlog, oldest age and drops when the store reports them); uplink state;
inference latency, active and shadow model versions, automatic model rollbacks; overall health;
bytes collected, forwarded and escalated per asset (``pdm_bytes_*_total{asset}``).
Built from whatever ``Pipeline.status()`` returns at scrape time: no state of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

DEVICE_STATES = ("connecting", "connected", "unreachable")
HEALTH_STATES = ("ok", "degraded", "failing")
UPLINK_STATES = ("up", "degraded", "down")
#: device counters that are errors, by class
ERROR_CLASSES = {
    "transient_errors": "transient",
    "permanent_errors": "permanent",
    "failed_requests": "failed_request",
    "busy": "busy",
    "failed_connects": "connect",
    "disconnects": "disconnect",
    "overruns": "overrun",
    "late_polls": "late_poll",
}

StatusFn = Callable[[], Mapping[str, Any]]


def _d(x: object) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _num(x: object) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else 0.0


class StatusCollector(Collector):
    """A ``prometheus_client`` collector reading a fresh snapshot on every scrape."""

    def __init__(self, status: StatusFn) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        yield from _devices(_d(s.get("devices")))
        yield from _dsp(_d(s.get("dsp")))
        yield from _queues(_d(s.get("queues")))
        yield from _stages(_d(s.get("stages")))
        yield from _store(_d(s.get("store")))
        yield from _uplinks(_d(s.get("uplink")))
        yield from _inference(_d(s.get("inference")))
        yield from _forwarding(_d(s.get("forwarding")))
        rollbacks = CounterMetricFamily(
            "pdm_model_rollbacks", "Automatic rollbacks of newly promoted models"
        )
        rollbacks.add_metric([], _num(_d(s.get("model_lifecycle")).get("rollbacks")))
        yield rollbacks
        yield from _model_updates(_d(_d(s.get("model_lifecycle")).get("updates")))
        lag = GaugeMetricFamily(
            "pdm_loop_lag_seconds", "Event-loop timer lateness", labels=["stat"]
        )
        for stat in ("last", "max", "mean"):
            lag.add_metric([stat], _num(_d(s.get("loop_lag")).get(f"{stat}_s")))
        yield lag
        health = _d(s.get("health"))
        h = GaugeMetricFamily("pdm_health", "1 for the current overall health", labels=["state"])
        for state in HEALTH_STATES:
            h.add_metric([state], 1.0 if health.get("state") == state else 0.0)
        yield h


def _model_updates(u: Mapping[str, Any]) -> Iterator[Metric]:
    """Pulled model updates (only when ``models.updates`` is configured)."""
    if not u:
        return
    rounds = CounterMetricFamily(
        "pdm_model_update_rounds", "Rounds of pulled model updates", labels=["result"]
    )
    failed = _num(u.get("failed_rounds"))
    rounds.add_metric(["ok"], _num(u.get("rounds")) - failed)
    rounds.add_metric(["failed"], failed)
    yield rounds
    versions = CounterMetricFamily(
        "pdm_model_update_versions", "Pulled model versions", labels=["outcome"]
    )
    for outcome in ("installed", "refused"):
        versions.add_metric([outcome], _num(u.get(outcome)))
    yield versions


def _devices(devices: Mapping[str, Any]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "pdm_device_state", "1 for the device's state", labels=["device", "state"]
    )
    breaker = GaugeMetricFamily(
        "pdm_device_breaker_open", "1 while the breaker is open", labels=["device"]
    )
    latency = GaugeMetricFamily(
        "pdm_device_read_latency_seconds", "Mean time per read", labels=["device"]
    )
    reads = CounterMetricFamily("pdm_device_reads", "Requests sent", labels=["device"])
    errors = CounterMetricFamily("pdm_device_errors", "Errors by class", labels=["device", "class"])
    lost = CounterMetricFamily(
        "pdm_device_samples_lost", "Waveform samples lost", labels=["device"]
    )
    for dev, st in sorted(devices.items()):
        st = _d(st)
        for s in DEVICE_STATES:
            state.add_metric([dev, s], 1.0 if st.get("state") == s else 0.0)
        breaker.add_metric([dev], 1.0 if st.get("breaker") == "open" else 0.0)
        n = _num(st.get("reads"))
        reads.add_metric([dev], n)
        latency.add_metric([dev], _num(st.get("read_seconds")) / n if n else 0.0)
        for key, cls in ERROR_CLASSES.items():
            errors.add_metric([dev, cls], _num(st.get(key)))
        lost.add_metric([dev], _num(st.get("samples_lost")))
    yield from (state, breaker, latency, reads, errors, lost)


def _dsp(dsp: Mapping[str, Any]) -> Iterator[Metric]:
    gaps = CounterMetricFamily(
        "pdm_channel_gaps", "Gaps that restarted framing", labels=["channel"]
    )
    for ch, n in sorted(_d(dsp.get("gaps")).items()):
        gaps.add_metric([ch], _num(n))
    frames = CounterMetricFamily("pdm_dsp_frames", "Feature frames computed")
    frames.add_metric([], _num(dsp.get("frames")))
    yield from (gaps, frames)


def _queues(queues: Mapping[str, Any]) -> Iterator[Metric]:
    depth = GaugeMetricFamily("pdm_queue_depth", "Items queued", labels=["queue"])
    size = GaugeMetricFamily("pdm_queue_capacity", "Queue bound", labels=["queue"])
    acc = CounterMetricFamily("pdm_queue_accepted", "Items accepted", labels=["queue"])
    drop = CounterMetricFamily("pdm_queue_dropped", "Items dropped when full", labels=["queue"])
    for q, st in sorted(queues.items()):
        st = _d(st)
        depth.add_metric([q], _num(st.get("depth")))
        size.add_metric([q], _num(st.get("size")))
        acc.add_metric([q], _num(st.get("accepted")))
        drop.add_metric([q], _num(st.get("dropped")))
    yield from (depth, size, acc, drop)


def _stages(stages: Mapping[str, Any]) -> Iterator[Metric]:
    restarts = CounterMetricFamily("pdm_stage_restarts", "Crash restarts", labels=["stage"])
    running = GaugeMetricFamily("pdm_stage_running", "1 while running", labels=["stage"])
    for name, st in sorted(stages.items()):
        restarts.add_metric([name], _num(_d(st).get("restarts")))
        running.add_metric([name], 1.0 if _d(st).get("state") == "running" else 0.0)
    yield from (restarts, running)


def _store(store: Mapping[str, Any]) -> Iterator[Metric]:
    written = CounterMetricFamily("pdm_store_written", "Records committed this run")
    written.add_metric([], _num(store.get("written")))
    pending = GaugeMetricFamily("pdm_store_pending", "Records taken but not committed")
    pending.add_metric([], _num(store.get("pending")))
    errs = CounterMetricFamily("pdm_store_write_errors", "Failed journal writes")
    errs.add_metric([], _num(store.get("write_errors")))
    bad = CounterMetricFamily("pdm_store_encode_errors", "Records left out: not encodable")
    bad.add_metric([], _num(store.get("encode_errors")))
    ok = GaugeMetricFamily("pdm_store_ok", "1 while the store writes")
    ok.add_metric([], 0.0 if store.get("state") == "failing" else 1.0)
    yield from (written, pending, errs, bad, ok)
    if "bytes" in store:
        b = GaugeMetricFamily("pdm_store_bytes", "Journal size on disk")
        b.add_metric([], _num(store.get("bytes")))
        yield b
    dropped = _d(store.get("drops"))
    if dropped:
        d = CounterMetricFamily("pdm_store_evicted", "Records evicted by kind", labels=["kind"])
        for kind, n in sorted(dropped.items()):
            d.add_metric([kind], _num(n))
        yield d


def _uplinks(uplinks: Mapping[str, Any]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "pdm_uplink_state", "1 for the uplink's state", labels=["sink", "state"]
    )
    backlog = GaugeMetricFamily(
        "pdm_store_backlog_records", "Records not yet acknowledged", labels=["sink"]
    )
    age = GaugeMetricFamily(
        "pdm_store_backlog_oldest_age_seconds", "Age of the oldest unsent record", labels=["sink"]
    )
    sent = CounterMetricFamily(
        "pdm_uplink_sent", "Records acknowledged by the sink", labels=["sink"]
    )
    rejected = CounterMetricFamily(
        "pdm_uplink_rejected", "Records the sink refused (dead-lettered)", labels=["sink"]
    )
    for sink, st in sorted(uplinks.items()):
        st = _d(st)
        for s in UPLINK_STATES:
            state.add_metric([sink, s], 1.0 if st.get("state") == s else 0.0)
        backlog.add_metric([sink], _num(st.get("backlog")))
        age.add_metric([sink], _num(st.get("oldest_age_s")))
        sent.add_metric([sink], _num(st.get("sent")))
        rejected.add_metric([sink], _num(st.get("rejected")))
    yield from (state, backlog, age, sent, rejected)


def _inference(inf: Mapping[str, Any]) -> Iterator[Metric]:
    lat = GaugeMetricFamily("pdm_inference_latency_seconds", "Mean inference time per frame")
    lat.add_metric([], _num(inf.get("latency_s")))
    scored = CounterMetricFamily("pdm_inference_scores", "Scores produced")
    scored.add_metric([], _num(inf.get("scored")))
    models = GaugeMetricFamily(
        "pdm_model_active",
        "1 per active (or shadow) model",
        labels=["asset", "model", "version", "role"],
    )
    for asset, m in sorted(_d(inf.get("models")).items()):
        m = _d(m)
        for role in ("active", "shadow"):
            spec = _d(m.get(role))
            if spec:
                models.add_metric(
                    [asset, str(spec.get("id", "")), str(spec.get("version", "")), role], 1.0
                )
    yield from (lat, scored, models)


BYTE_SERIES = (
    ("collected", "Raw sample bytes read from devices"),
    ("forwarded", "Line-protocol bytes the uplink delivered"),
    ("escalated", "Snapshot bytes delivered to the escalation endpoint"),
)


def _forwarding(fwd: Mapping[str, Any]) -> Iterator[Metric]:
    assets = _d(fwd.get("assets"))
    for what, doc in BYTE_SERIES:
        m = CounterMetricFamily(f"pdm_bytes_{what}", doc, labels=["asset"])
        for asset, st in sorted(assets.items()):
            m.add_metric([asset], _num(_d(st).get(f"{what}_bytes")))
        yield m


def render(status: StatusFn) -> bytes:
    """The Prometheus text format (0.0.4) for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)
