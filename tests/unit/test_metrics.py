"""Metrics: counting from many threads, snapshots, Graphite lines and the Prometheus endpoint."""

from __future__ import annotations

import socket
import threading
import urllib.request

import graphyte
import pytest

from forwarder.metrics import Metrics, graphite_lines
from helpers.polling import wait_until


def test_counters_gauges_and_summaries_in_snapshot():
    metrics = Metrics()
    metrics.inc("successful_sends")
    metrics.inc("successful_sends", 4)
    metrics.set("pvs_subscribed", 12)
    metrics.observe("latency_epics_to_produce", 0.5)
    metrics.observe("latency_epics_to_produce", 1.5)
    snap = metrics.snapshot()
    assert snap["successful_sends"] == 5
    assert snap["pvs_subscribed"] == 12
    assert snap["latency_epics_to_produce"] == {"count": 2, "sum": 2.0}
    assert snap["send_buffer_errors"] == 0


def test_new_names_are_created_and_kind_clashes_are_logged_not_raised(caplog):
    metrics = Metrics()
    metrics.inc("config_commands_accepted")
    metrics.set("queue_length", 4)
    metrics.set("successful_sends", 1)  # a counter, not a gauge: logged and ignored
    snap = metrics.snapshot()
    assert snap["config_commands_accepted"] == 1
    assert snap["queue_length"] == 4
    assert snap["successful_sends"] == 0
    assert "'successful_sends' is a counter" in caplog.text


def test_increments_from_many_threads_are_not_lost():
    metrics = Metrics()

    def bump():
        for _ in range(2000):
            metrics.inc("processing_errors")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.snapshot()["processing_errors"] == 8000


def test_graphite_lines_use_the_ess_names_and_interval_means():
    sender = graphyte.Sender("localhost", prefix="fwd")
    metrics = Metrics()
    metrics.inc("successful_sends", 3)
    metrics.observe("latency_produce_to_delivery", 1.0)
    lines, state = graphite_lines(sender, metrics.snapshot(), {}, 100)
    text = b"".join(lines).decode()
    assert "fwd.successful_sends 3 100\n" in text
    assert "fwd.pvs_subscribed 0 100\n" in text
    assert "fwd.send_buffer_errors 0 100\n" in text
    assert "fwd.latency_produce_to_delivery.mean 1.0 100\n" in text
    metrics.observe("latency_produce_to_delivery", 3.0)
    metrics.observe("latency_produce_to_delivery", 5.0)
    lines, _ = graphite_lines(sender, metrics.snapshot(), state, 110)
    text = b"".join(lines).decode()
    assert "fwd.latency_produce_to_delivery.mean 4.0 110\n" in text
    assert "fwd.latency_produce_to_delivery.count 3 110\n" in text


def test_graphite_push_reaches_a_plaintext_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)
    port = server.getsockname()[1]
    metrics = Metrics()
    metrics.inc("successful_sends", 7)
    metrics.start_graphite(f"127.0.0.1:{port}", 0.05, "forwarder")
    try:
        conn, _ = server.accept()
        conn.settimeout(10)
        received = b""
        while b"forwarder.successful_sends 7" not in received:
            chunk = conn.recv(4096)
            assert chunk, f"connection closed; got {received!r}"
            received += chunk
        conn.close()
    finally:
        metrics.stop()
        server.close()


def test_bad_graphite_address_is_refused():
    with pytest.raises(ValueError, match="host:port"):
        Metrics().start_graphite("no-port", 1, "p")


def test_prometheus_endpoint_serves_our_metrics():
    metrics = Metrics()
    metrics.inc("send_delivery_errors", 2)
    metrics.set("pvs_subscribed", 3)
    metrics.observe("latency_epics_to_produce", 0.5)
    metrics.start_prometheus(0)
    try:
        url = f"http://127.0.0.1:{metrics.prometheus_port}/metrics"

        def scrape():
            try:
                return urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                return ""

        body = wait_until(scrape, timeout=10, what="the Prometheus endpoint to answer")
        assert "forwarder_send_delivery_errors_total 2.0" in body
        assert "forwarder_pvs_subscribed 3.0" in body
        assert "forwarder_latency_epics_to_produce_seconds_count 1.0" in body
        assert "python_gc" not in body  # our own registry, not the global one
    finally:
        metrics.stop()


def test_graphite_lines_carry_the_ess_send_latency_summary():
    sender = graphyte.Sender("localhost", prefix="fwd")
    metrics = Metrics()
    metrics.observe("latency_produce_to_delivery", 1.0)
    metrics.observe("latency_produce_to_delivery", 2.0)
    text = b"".join(graphite_lines(sender, metrics.snapshot(), {}, 100)[0]).decode()
    assert "fwd.send_latency_seconds.sum 3.0 100\n" in text
    assert "fwd.send_latency_seconds.count 2 100\n" in text
    assert "fwd.send_latency_seconds.average 1.5 100\n" in text


def test_the_default_graphite_prefix_is_the_ess_one(monkeypatch):
    import socket

    from forwarder.lifecycle import ess_graphite_prefix

    monkeypatch.setattr(socket, "gethostname", lambda: "Host.Example.org")
    assert ess_graphite_prefix("My Fwd") == "forwarder.host_example_org.myfwd"


def test_a_summary_takes_many_observations_at_once():
    metrics = Metrics()
    metrics.observe("latency_produce_to_delivery", 0.5)
    metrics.observe("latency_produce_to_delivery", 1.5, count=3)
    assert metrics.snapshot()["latency_produce_to_delivery"] == {"count": 4, "sum": 2.0}
