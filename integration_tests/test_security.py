"""SASL: the forwarder works through the broker's SASL_PLAINTEXT listener with PLAIN and
SCRAM, configured by ini files like the ESS ones; a wrong password is reported clearly."""

from __future__ import annotations

import re
import signal

import pytest

from helpers.polling import wait_until
from helpers.rig.api import RigTimeout
from integration_tests.forwarder_fixtures import Stream, epics_write, ini_file

TIMEOUT = 30.0
AUTH_ERROR = re.compile(
    r"(?i)(authenticat|sasl|credential|password)[^\n]*(fail|invalid|error|wrong)"
)


# librdkafka before 2.6.1 cannot authenticate with SCRAM to a Kafka 4.x broker.
SCRAM_NEEDS_LIBRDKAFKA = (2, 6, 1)


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version or "")
    return tuple(int(part) for part in match.groups()) if match else None


def library_cannot_speak(mechanism: str, librdkafka: str | None) -> str | None:
    """Why the forwarder's librdkafka cannot use ``mechanism`` with this broker, if it
    cannot: then a failure is the library's, not the forwarder code's."""
    version = _version_tuple(librdkafka)
    if mechanism.startswith("SCRAM") and version and version < SCRAM_NEEDS_LIBRDKAFKA:
        needed = ".".join(map(str, SCRAM_NEEDS_LIBRDKAFKA))
        return (
            f"the forwarder under test links librdkafka {librdkafka}, and librdkafka before "
            f"{needed} cannot authenticate with {mechanism} to a Kafka 4.x broker such as "
            "the rig's: upgrade its confluent-kafka"
        )
    return None


def _forwards_through_sasl(
    mechanism, ini, ioc, forwarder_factory, control_factory, outputs, topics, librdkafka
):
    """Start a forwarder using ``mechanism`` and check that it forwards; a failure names the
    library when the library is why."""
    try:
        fwd = forwarder_factory(ini_file(ini), sasl=mechanism)
        _forwards_through(fwd, ioc, control_factory, outputs, topics)
    except Exception as exc:
        reason = library_cannot_speak(mechanism, librdkafka)
        if reason is None:
            raise
        pytest.fail(f"{reason}\n{type(exc).__name__}: {exc}")


def _forwards_through(fwd, ioc, control_factory, outputs, topics):
    control = control_factory(fwd)
    topic = topics.new("sasl-data")
    reader = outputs(topic)
    stream = Stream(ioc.pv("DOUBLE"), "f144", topic)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    epics_write(stream.channel, 6.25)
    reader.wait_for_message(
        lambda m: m.schema == "f144" and float(m.value) == 6.25, timeout=TIMEOUT, what="6.25"
    )


@pytest.mark.ess
def test_forwarding_through_sasl_plain(
    ioc, forwarder_factory, control_factory, outputs, topics, forwarder_librdkafka
):
    _forwards_through_sasl(
        "PLAIN", "forwarder_sasl_plain.ini", ioc, forwarder_factory, control_factory, outputs,
        topics, forwarder_librdkafka,
    )  # fmt: skip


@pytest.mark.ess
def test_forwarding_through_sasl_scram_sha_256(
    ioc, forwarder_factory, control_factory, outputs, topics, forwarder_librdkafka
):
    _forwards_through_sasl(
        "SCRAM-SHA-256", "forwarder_sasl_scram.ini", ioc, forwarder_factory, control_factory,
        outputs, topics, forwarder_librdkafka,
    )  # fmt: skip


@pytest.mark.ess
def test_forwarding_through_sasl_scram_sha_512(
    ioc, forwarder_factory, control_factory, outputs, topics, forwarder_librdkafka
):
    _forwards_through_sasl(
        "SCRAM-SHA-512", "forwarder_sasl_scram.ini", ioc, forwarder_factory, control_factory,
        outputs, topics, forwarder_librdkafka,
    )  # fmt: skip


@pytest.mark.parametrize(
    "mechanism, ini",
    [("PLAIN", "forwarder_sasl_plain.ini"), ("SCRAM-SHA-256", "forwarder_sasl_scram.ini")],
)
@pytest.mark.extension
def test_wrong_sasl_password_is_reported_in_the_log(mechanism, ini, forwarder_factory):
    fwd = forwarder_factory(
        ini_file(ini), sasl=mechanism, password="not-the-password", wait_ready=False
    )
    wait_until(
        lambda: AUTH_ERROR.search(fwd.log_tail(400)),
        timeout=TIMEOUT,
        interval=0.2,
        what=f"an authentication error in the log of a forwarder with a wrong {mechanism} password",
        seen=lambda: fwd.log_tail(15),
    )


@pytest.mark.parametrize(
    "mechanism, ini",
    [("PLAIN", "forwarder_sasl_plain.ini"), ("SCRAM-SHA-256", "forwarder_sasl_scram.ini")],
)
@pytest.mark.extension
def test_forwarder_failing_to_authenticate_still_stops_promptly_on_sigterm(
    mechanism, ini, forwarder_factory
):
    """Failing authentication must not wedge the process: once the error is logged, SIGTERM
    still ends it promptly (whether it keeps retrying or exits by itself is not pinned)."""
    fwd = forwarder_factory(
        ini_file(ini), sasl=mechanism, password="not-the-password", wait_ready=False
    )
    wait_until(
        lambda: AUTH_ERROR.search(fwd.log_tail(400)) or not fwd.is_running(),
        timeout=TIMEOUT,
        interval=0.2,
        what=f"an authentication error with a wrong {mechanism} password",
        seen=lambda: fwd.log_tail(15),
    )
    if fwd.is_running():
        fwd.send_signal(signal.SIGTERM)
    try:
        fwd.wait_exit(timeout=15.0)
    except RigTimeout:
        pytest.fail(
            f"forwarder with a wrong {mechanism} password ignored SIGTERM for 15 s:\n"
            + fwd.log_tail(15)
        )
