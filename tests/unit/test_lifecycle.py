"""The process around the control loop: signals, the exit watchdog, exit codes."""

import os
import signal
import threading

from forwarder import lifecycle as lifecycle_module
from forwarder.app import StopRequest
from forwarder.lifecycle import ExitWatchdog, run
from helpers.polling import wait_until

from .test_app import ADD_A, SPEC, make_parts, settings, statuses


class NoWatchdog(ExitWatchdog):
    def __init__(self):
        super().__init__(60, force_exit=lambda code: None)

    def start(self):
        pass


def test_sigterm_stops_the_loop_closes_sources_then_flushes_and_exits_0():
    parts, journal = make_parts()

    def drive():
        wait_until(lambda: parts.status_sink.messages, timeout=10, what="first status")
        parts.config_consumer.send(ADD_A)
        wait_until(
            lambda: any(s["streams"] for s in statuses(parts)),
            timeout=10,
            what="a status listing the added stream",
        )
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    driver = threading.Thread(target=drive)
    driver.start()
    code = run(settings(), parts, watchdog=NoWatchdog())
    driver.join(10)
    assert code == 0
    assert parts.manager.specs() == [SPEC]
    events = journal.events
    assert events.index("manager.close") < events.index("output.close")
    assert events.index("manager.close") < events.index("factory.close")
    assert {"consumer.close", "status.close"} <= set(events)
    assert parts.metrics.stopped
    assert signal.getsignal(signal.SIGTERM) is previous


def test_sigint_also_stops():
    parts, _journal = make_parts()

    def drive():
        wait_until(lambda: parts.status_sink.messages, timeout=10, what="first status")
        os.kill(os.getpid(), signal.SIGINT)

    driver = threading.Thread(target=drive)
    driver.start()
    assert run(settings(), parts, watchdog=NoWatchdog()) == 0
    driver.join(10)


def test_failure_to_build_parts_exits_1(monkeypatch, caplog):
    def broken(_settings, _on_fatal):
        raise RuntimeError("no broker library")

    monkeypatch.setattr(lifecycle_module, "build_parts", broken)
    assert run(settings(), install_signals=False) == 1
    assert "no broker library" in caplog.text


def test_watchdog_forces_exit_when_shutdown_hangs(caplog):
    fired = threading.Event()
    codes = []
    dog = ExitWatchdog(0.05, force_exit=lambda code: (codes.append(code), fired.set()))
    dog.start()
    assert fired.wait(10)
    assert codes == [1]
    assert "forcing exit" in caplog.text


def test_watchdog_cancelled_does_not_fire():
    fired = threading.Event()
    dog = ExitWatchdog(0.05, force_exit=lambda code: fired.set())
    dog.start()
    dog.cancel()
    dog._timer.join(5)
    assert not fired.is_set()


def test_a_fatal_kafka_error_stops_the_forwarder_with_exit_1(caplog):
    parts, journal = make_parts()
    request = StopRequest()

    def drive():
        wait_until(lambda: parts.status_sink.messages, timeout=10, what="first status")
        request.fail("Kafka authentication failed (config-topic): wrong password")
        request.fail("a second failure is not the reason")

    driver = threading.Thread(target=drive)
    driver.start()
    code = run(settings(), parts, install_signals=False, watchdog=NoWatchdog(), request=request)
    driver.join(10)
    assert code == 1
    assert request.failure == "Kafka authentication failed (config-topic): wrong password"
    assert "manager.close" in journal.events and "output.close" in journal.events
    assert caplog.text.count("Stopping the forwarder") == 1
