"""A broker someone else runs (``--kafka-bootstrap HOST:PORT``), for either backend."""

from __future__ import annotations

from pathlib import Path

from helpers import kafka_helpers
from helpers.rig.api import BrokerNotSupported
from helpers.rig.paths import LOG_DIR, run_id
from helpers.rig.readiness import wait_broker_ready


class ExternalKafka:
    """Only its address is known: it cannot be stopped or started (``restartable`` is False)
    and has no SASL listener the rig knows of (``sasl_bootstrap`` is None)."""

    restartable = False
    pausable = False

    def __init__(self, bootstrap: str, name: str = "external-kafka"):
        self.name = name
        self._bootstrap = bootstrap
        self._log_path = LOG_DIR / run_id() / f"{name}.log"

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    @property
    def sasl_bootstrap(self) -> str | None:
        return None

    @property
    def forwarder_bootstrap(self) -> str:
        return self._bootstrap

    @property
    def forwarder_sasl_bootstrap(self) -> str | None:
        return None

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def has_storage(self) -> bool:
        """Its data is not the rig's to remove: it stays."""
        return True

    def _not_supported(self, what: str) -> BrokerNotSupported:
        return BrokerNotSupported(
            f"{what} is not supported for an external broker ({self._bootstrap})"
        )

    def start(self) -> None:
        raise self._not_supported("start")

    def stop(self) -> None:
        raise self._not_supported("stop")

    def pause(self) -> None:
        raise self._not_supported("pause")

    def resume(self) -> None:
        raise self._not_supported("resume")

    def restart(self) -> None:
        raise self._not_supported("restart")

    def close(self) -> None:
        """Nothing to release: the broker is not ours."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the external broker answers a metadata request."""
        wait_broker_ready(
            self.name,
            self._bootstrap,
            None,
            timeout=timeout,
            interval=0.5,
            what=f"external Kafka broker {self._bootstrap} to answer",
        )

    def is_running(self) -> bool:
        return kafka_helpers.broker_answers(self._bootstrap)

    def log_tail(self, lines: int = 40) -> str:
        return f"(no log: {self.name} at {self._bootstrap} is not run by the rig)"
