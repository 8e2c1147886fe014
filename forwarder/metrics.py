"""Counters, gauges and latency summaries of the data plane, and their export.

Everything is kept in one object behind one lock, because the numbers are bumped from EPICS
callback threads, the producer's poll thread and the config loop at the same time. Export is
pull-style (a snapshot): Graphite gets a plaintext push every interval (as the ESS forwarder
does, via ``graphyte``), Prometheus scrapes its own registry.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

COUNTERS = (
    "processing_errors",
    "successful_sends",
    "send_buffer_errors",
    "send_delivery_errors",
    "updates_dropped",
    "updates_rejected",
    "callback_errors",
    "producer_replacements",
)
GAUGES = ("pvs_subscribed",)
SUMMARIES = ("latency_epics_to_produce", "latency_produce_to_delivery")

_DOCS = {
    "processing_errors": "Updates a serialiser could not turn into a message",
    "successful_sends": "Messages Kafka acknowledged",
    "send_buffer_errors": "Messages dropped because the producer's buffer budget was exhausted",
    "send_delivery_errors": "Messages Kafka reported as not delivered",
    "updates_dropped": "Messages lost on the way to Kafka: over the buffer budget, refused"
    " by Kafka, or not delivered before shutdown",
    "updates_rejected": "Updates dropped by the timestamp filter",
    "callback_errors": "Unexpected exceptions caught in EPICS callbacks",
    "producer_replacements": "Kafka clients replaced because they held messages without"
    " delivering while a new client reached the broker",
    "pvs_subscribed": "Streams currently configured",
    "latency_epics_to_produce": "Seconds from EPICS timestamp to handing the message to Kafka",
    "latency_produce_to_delivery": "Seconds from handing a message to Kafka to its ack",
}


@dataclass
class _Summary:
    count: int = 0
    total: float = 0.0


class Metrics:
    """Thread-safe named counters, gauges and (count, sum) latency summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._gauges: dict[str, float] = dict.fromkeys(GAUGES, 0)
        self._summaries = {name: _Summary() for name in SUMMARIES}
        self._stop = threading.Event()
        self._graphite_thread: threading.Thread | None = None
        self._http_server = None

    def inc(self, name: str, n: int = 1) -> None:
        """Add to a counter; a name not seen before becomes a new counter."""
        with self._lock:
            if name in self._counters:
                self._counters[name] += n
            elif self._kind_clash(name, "counter"):
                return
            else:
                self._counters[name] = n

    def set(self, name: str, value: float) -> None:
        """Set a gauge; a name not seen before becomes a new gauge."""
        with self._lock:
            if name in self._gauges or not self._kind_clash(name, "gauge"):
                self._gauges[name] = value

    def observe(self, name: str, seconds: float, count: int = 1) -> None:
        """Add observations to a summary: one of ``seconds``, or ``count`` of them summing to
        ``seconds``. A name not seen before becomes a new summary."""
        with self._lock:
            summary = self._summaries.get(name)
            if summary is None:
                if self._kind_clash(name, "summary"):
                    return
                summary = self._summaries[name] = _Summary()
            summary.count += count
            summary.total += seconds

    def _kind_clash(self, name: str, kind: str) -> bool:
        """True (and logged) if ``name`` already exists as another kind of metric."""
        kinds = {"counter": self._counters, "gauge": self._gauges, "summary": self._summaries}
        for other, names in kinds.items():
            if other != kind and name in names:
                log.error("Metric %r is a %s; cannot use it as a %s", name, other, kind)
                return True
        return False

    def gauge_names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._gauges)

    def snapshot(self) -> dict[str, float | dict[str, float]]:
        """Current values; summaries as {"count": n, "sum": seconds}."""
        with self._lock:
            out: dict[str, float | dict[str, float]] = {}
            out.update(self._counters)
            out.update(self._gauges)
            for name, s in self._summaries.items():
                out[name] = {"count": s.count, "sum": s.total}
            return out

    # --- Graphite -------------------------------------------------------------------------

    def start_graphite(self, address: str, interval_s: float, prefix: str) -> None:
        """Push all metrics as Graphite plaintext to ``address`` ("host:port") every interval.

        Latency summaries go out as ``<name>.count`` (cumulative) and ``<name>.mean`` (mean
        over the last interval, 0 when nothing was observed).
        """
        import graphyte

        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Graphite address must be host:port, got {address!r}")
        sender = graphyte.Sender(host, port=int(port), prefix=prefix or None)
        self._graphite_thread = threading.Thread(
            target=self._graphite_loop, args=(sender, interval_s), name="graphite", daemon=True
        )
        self._graphite_thread.start()

    def _graphite_loop(self, sender, interval_s: float) -> None:
        previous: dict[str, dict[str, float]] = {}
        while not self._stop.wait(interval_s):
            try:
                lines, previous = graphite_lines(sender, self.snapshot(), previous, time.time())
                sender.send_message(b"".join(lines))
            except Exception:
                log.exception("Could not send metrics to Graphite")

    # --- Prometheus -----------------------------------------------------------------------

    def start_prometheus(self, port: int) -> None:
        """Serve /metrics on ``port`` from a registry of our own (not the global one)."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=True)
        registry.register(_PrometheusCollector(self))
        self._http_server, _ = start_http_server(port, registry=registry)

    @property
    def prometheus_port(self) -> int | None:
        """The port actually served (useful when started with port 0)."""
        return None if self._http_server is None else self._http_server.server_address[1]

    def stop(self) -> None:
        self._stop.set()
        if self._graphite_thread is not None:
            self._graphite_thread.join(timeout=5)
            self._graphite_thread = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None


# Summaries the ESS forwarder sends under another name (as <name>.sum/.count/.average).
ESS_GRAPHITE_SUMMARIES = {"latency_produce_to_delivery": "send_latency_seconds"}


def graphite_lines(sender, snapshot: dict, previous: dict, now: float):
    """Plaintext lines for one push, and the summary state to diff the next push against."""
    lines = []
    current = {}
    for name, value in snapshot.items():
        if isinstance(value, dict):
            before = previous.get(name, {"count": 0, "sum": 0.0})
            count = value["count"] - before["count"]
            mean = (value["sum"] - before["sum"]) / count if count else 0.0
            lines.append(sender.build_message(f"{name}.count", value["count"], now))
            lines.append(sender.build_message(f"{name}.mean", mean, now))
            ess = ESS_GRAPHITE_SUMMARIES.get(name)
            if ess is not None:
                average = value["sum"] / value["count"] if value["count"] else 0.0
                lines.append(sender.build_message(f"{ess}.sum", value["sum"], now))
                lines.append(sender.build_message(f"{ess}.count", value["count"], now))
                lines.append(sender.build_message(f"{ess}.average", average, now))
            current[name] = value
        else:
            lines.append(sender.build_message(name, value, now))
    return lines, current


class _PrometheusCollector:
    """Reads a Metrics snapshot at scrape time, so nothing is duplicated or kept in sync."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            SummaryMetricFamily,
        )

        for name, value in self._metrics.snapshot().items():
            doc = _DOCS.get(name, name)
            full = f"forwarder_{name}"
            if isinstance(value, dict):
                yield SummaryMetricFamily(
                    f"{full}_seconds", doc, count_value=value["count"], sum_value=value["sum"]
                )
            elif name in self._metrics.gauge_names():
                yield GaugeMetricFamily(full, doc, value=value)
            else:
                yield CounterMetricFamily(full, doc, value=value)
