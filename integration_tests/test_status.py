"""x5f2 status: who the forwarder is, every ~4 s, and right after each command."""

from __future__ import annotations

import os
import socket
import threading
import urllib.request

import pytest

from helpers.flatbuffers_helpers import describe
from helpers.polling import wait_until
from helpers.rig.ports import free_tcp_port
from integration_tests.forwarder_fixtures import Stream, epics_write

STATUS_INTERVAL_MS = 4000
# A status "right after" a command arrives well within this; the periodic one only every 4 s.
PROMPT_S = 1.5
TIMEOUT = 20.0


def _same_host_pid(status_pid: int, forwarder_pid: int | None) -> bool | None:
    """True/False if the status pid can be checked on this machine, None if it cannot (the
    forwarder runs elsewhere, e.g. in a container)."""
    if forwarder_pid is None or not os.path.exists(f"/proc/{status_pid}"):
        return None
    if status_pid == forwarder_pid:
        return True
    try:  # a launcher script may exec or fork: the forwarder is then in its process group
        return os.getpgid(status_pid) == forwarder_pid
    except ProcessLookupError:
        return None


@pytest.mark.ess
def test_status_names_software_service_host_pid_and_interval(forwarder, control):
    record = control.wait_for_status(timeout=15.0, what="a status message")
    status = record.status
    assert status.software_name.strip(), describe(status)
    assert status.software_version.strip(), describe(status)
    assert status.service_id == forwarder.service_id, describe(status)
    assert status.update_interval == STATUS_INTERVAL_MS, f"update_interval {status.update_interval}"
    assert status.process_id > 0
    local = _same_host_pid(status.process_id, forwarder.pid)
    if local is not None:
        assert local, f"status pid {status.process_id} is not the forwarder's ({forwarder.pid})"
        assert status.host_name == socket.gethostname(), describe(status)
    else:
        assert status.host_name.strip(), describe(status)
    assert isinstance(status.status, dict) and status.streams() == [], status.status_json


@pytest.mark.ess
def test_status_is_sent_about_every_four_seconds(forwarder, control):
    control.wait_for_status(
        lambda r: len(control.statuses) >= 4,
        timeout=4 * STATUS_INTERVAL_MS / 1000 + 10,
        what="four status messages",
    )
    stamps = [r.kafka_timestamp_ms for r in control.statuses[:4]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(3000 <= g <= 5500 for g in gaps), f"gaps between statuses: {gaps} ms"


@pytest.mark.ess
def test_a_status_follows_each_command_at_once(ioc, forwarder, control, topics):
    topic = topics.new("prompt")
    a = Stream(ioc.pv("DOUBLE"), "f144", topic)
    b = Stream(ioc.pv("LONG"), "f144", topic, "PVA")
    c = Stream(ioc.pv("SHORT"), "f142", topic)
    steps = [
        ("ADD a", lambda: control.add([a]), {a}),
        ("ADD b", lambda: control.add([b]), {a, b}),
        ("REMOVE a", lambda: control.remove(channel=a.channel), {b}),
        ("REPLACE by c", lambda: control.replace([c]), {c}),
        ("REMOVEALL", control.remove_all, set()),
        ("ADD a, c", lambda: control.add([a, c]), {a, c}),
    ]
    late = []
    for label, command, expected in steps:
        control.poll_status(timeout_ms=0)
        sent_at = command()
        want = {s.key for s in expected}
        record = control.wait_for_status(
            lambda r, w=want: r.streams == w,
            timeout=15.0,
            since_ms=int(sent_at * 1000) - 50,
            what=f"a status after {label}",
        )
        delay = record.kafka_timestamp_ms / 1000 - sent_at
        if delay > PROMPT_S:
            late.append(f"{label}: {delay:.2f}s")
    assert not late, f"status not sent right after the command (> {PROMPT_S}s): {late}"


def _scrape(port: int) -> dict[str, float]:
    """Samples of the forwarder's Prometheus endpoint ({} while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
            text = page.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.extension
def test_prometheus_counters_move_with_forwarding(
    ioc, forwarder_factory, control_factory, outputs, topics
):
    """--prometheus-port serves live numbers: sends and latency observations grow with the
    updates forwarded, and the gauge counts the streams."""
    port = free_tcp_port()
    fwd = forwarder_factory(extra_args=("--prometheus-port", str(port)))
    control = control_factory(fwd)
    name = ioc.pv("DOUBLE")
    topic = topics.new("scraped")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    sends, latency = (
        "forwarder_successful_sends_total",
        "forwarder_latency_epics_to_produce_seconds_count",
    )
    before = wait_until(
        lambda: (s := _scrape(port)) and sends in s and s,
        timeout=TIMEOUT,
        what=f"a scrape of http://127.0.0.1:{port}/metrics with {sends}",
    )
    assert before.get("forwarder_pvs_subscribed") == 1, before
    values = [10.5 + i for i in range(5)]
    for value in values:
        epics_write(name, value)
    reader.wait_for(
        lambda: [float(m.value) for m in reader.messages("f144", name)][-1:] == values[-1:],
        timeout=TIMEOUT,
        what=f"{name} = {values[-1]}",
    )
    latest = {}

    def moved():
        latest.update(_scrape(port))
        return latest.get(sends, 0) >= before[sends] + len(values) and latest.get(
            latency, 0
        ) >= before.get(latency, 0) + len(values)

    wait_until(
        moved,
        timeout=TIMEOUT,
        what=f"{sends} and {latency} up by {len(values)} from {before.get(sends)}, "
        f"{before.get(latency)}",
        seen=lambda: {k: latest.get(k) for k in (sends, latency)},
    )


class _CarbonListener:
    """A plain TCP Graphite (carbon plaintext) receiver: collects "name value time" lines."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                except OSError:
                    pass
            self.lines.extend(data.decode(errors="replace").splitlines())

    def latest(self) -> dict[str, float]:
        """The newest value of every metric name received."""
        out = {}
        for line in list(self.lines):
            parts = line.split()
            if len(parts) == 3:
                out[parts[0]] = float(parts[1])
        return out

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


# What the ESS forwarder sends to Graphite (forwarder/metrics/statistics_reporter.py and its
# callers): under forwarder.<host, dots as _>.<service id>, lower case.
ESS_GRAPHITE_NAMES = (
    "successful_sends",
    "send_buffer_errors",
    "send_delivery_errors",
    "pvs_subscribed",
    "processing_errors",
    "send_latency_seconds.sum",
    "send_latency_seconds.count",
    "send_latency_seconds.average",
)


@pytest.mark.ess
def test_graphite_receives_the_ess_metric_names_and_sends_move_with_forwarding(
    ioc, forwarder_factory, control_factory, outputs, topics
):
    """Dashboards built for the ESS forwarder read these exact names; the send counter must
    count what is forwarded."""
    carbon = _CarbonListener()
    try:
        fwd = forwarder_factory(
            extra_args=(
                "--grafana-carbon-address",
                f"127.0.0.1:{carbon.port}",
                "--statistics-update-interval",
                "1",
            )
        )
        control = control_factory(fwd)
        status = control.wait_for_status(timeout=TIMEOUT).status
        prefix = f"forwarder.{status.host_name.replace('.', '_')}.{status.service_id}"
        prefix = prefix.replace(" ", "").lower()
        name = ioc.pv("DOUBLE")
        topic = topics.new("graphite")
        reader = outputs(topic)
        stream = Stream(name, "f144", topic)
        # The initial value first: puts made while the monitor connects may fold into it.
        control.add_and_wait([stream], reader, timeout=TIMEOUT)
        for value in (2.5, 3.5, 4.5):
            epics_write(name, value)
        reader.wait_for_count(4, schema="f144", source=name, timeout=TIMEOUT)
        wanted = [f"{prefix}.{n}" for n in ESS_GRAPHITE_NAMES]
        sends = f"{prefix}.successful_sends"
        wait_until(
            lambda: (got := carbon.latest()).get(sends, 0) >= 4 and all(n in got for n in wanted),
            timeout=TIMEOUT,
            what=f"{wanted} with {sends} >= 4 on the carbon listener",
            seen=lambda: sorted(carbon.latest().items())[:20],
        )
        assert carbon.latest()[f"{prefix}.pvs_subscribed"] == 1
    finally:
        carbon.close()
