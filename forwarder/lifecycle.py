"""The forwarder process's life: start the metrics exporters, run the control loop until a
signal or a fatal error, then shut down within a bound.

Kept apart from the control loop (forwarder.app) so that the loop can be driven by tests
without signals, timers or exporters, and so that the command line only needs ``run``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from forwarder.app import Forwarder, Parts, StopRequest, build_parts
from forwarder.metrics import Metrics
from forwarder.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_BOUND_S = 10.0


class ExitWatchdog:
    """Ends the process if shutdown (including interpreter exit) hangs past the bound."""

    def __init__(self, bound_s: float, force_exit: Callable[[int], None] = os._exit):
        self._timer = threading.Timer(bound_s, self._fire, args=(bound_s,))
        self._timer.daemon = True
        self._force_exit = force_exit

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self, bound_s: float) -> None:
        log.error("Shutdown took longer than %.0fs; forcing exit", bound_s)
        logging.shutdown()
        self._force_exit(1)


def ess_graphite_prefix(service_id: str) -> str:
    """The ESS forwarder's Graphite prefix: forwarder.<host, dots as _>.<service id>."""
    import socket

    host = socket.gethostname().replace(".", "_")
    return f"forwarder.{host}.{service_id}".replace(" ", "").lower()


def _start_metrics_export(settings: Settings, metrics: Metrics) -> None:
    try:
        if settings.grafana_carbon_address:
            metrics.start_graphite(
                settings.grafana_carbon_address,
                settings.statistics_update_interval_s,
                settings.grafana_metric_prefix or ess_graphite_prefix(settings.service_id),
            )
        if settings.prometheus_port is not None:
            metrics.start_prometheus(settings.prometheus_port)
    except Exception:
        log.exception("Could not start metrics export; forwarding without it")


def run(
    settings: Settings,
    parts: Parts | None = None,
    *,
    install_signals: bool = True,
    watchdog: ExitWatchdog | None = None,
    request: StopRequest | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or a fatal Kafka error (exit 1)."""
    log.info("Starting forwarder %s (service id %s)", _version(), settings.service_id)
    request = request or StopRequest()
    try:
        parts = parts or build_parts(settings, request.fail)
    except Exception:
        log.exception("Could not start the forwarder")
        return 1
    _start_metrics_export(settings, parts.metrics)
    app = Forwarder(settings, parts, request)
    previous = _install_signal_handlers(app.stop) if install_signals else {}
    try:
        app.run()
    finally:
        (watchdog or ExitWatchdog(SHUTDOWN_BOUND_S)).start()
        started = time.monotonic()
        app.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("Stopped after %.1fs of shutdown", time.monotonic() - started)
    return 1 if request.failure else 0


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    def on_signal(signum, _frame) -> None:
        log.info("Received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, on_signal)
    return previous


def _version() -> str:
    import forwarder

    return forwarder.__version__
