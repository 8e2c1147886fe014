"""al00 alarms and ep01 connection status, read back with the library's deserialisers.

The registry gives our fast writers; the library-backed ones are checked the same way, and
the fast ones are compared with the library's own output over many generated cases.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from streaming_data_types.alarm_al00 import Severity as Al00Severity
from streaming_data_types.alarm_al00 import deserialise_al00, serialise_al00
from streaming_data_types.epics_connection_ep01 import (
    ConnectionInfo,
    deserialise_ep01,
    serialise_ep01,
)

from forwarder.serialise import (
    UnsupportedValue,
    alarm_serialiser,
    connection_serialiser,
    make_data_serialiser,
)
from forwarder.serialise.al00 import Al00FastAlarmSerialiser, Al00FastDataSerialiser
from forwarder.serialise.ep01 import Ep01FastConnectionSerialiser
from forwarder.update import Alarm, ConnectionStatus, Severity, Update
from tests.unit import fb_structure as fb
from tests.unit.reference_serialisers import (
    Al00AlarmSerialiser,
    Al00DataSerialiser,
    Ep01ConnectionSerialiser,
)

ALARM_SERIALISERS = [Al00FastAlarmSerialiser, Al00AlarmSerialiser]
CONNECTION_SERIALISERS = [Ep01FastConnectionSerialiser, Ep01ConnectionSerialiser]
TEXTS = ["", "a", "ab", "abc", "abcd", "HIHI", "Température °C", "检测器 🧪", "x" * 5000]
TIMESTAMPS = [0, 1, -1, 1_700_000_000_123_456_789, 2**63 - 1, -(2**63)]

AL00 = {
    Severity.NO_ALARM: Al00Severity.OK,
    Severity.MINOR: Al00Severity.MINOR,
    Severity.MAJOR: Al00Severity.MAJOR,
    Severity.INVALID: Al00Severity.INVALID,
}


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("message", ["", "HIHI", "Température trop haute 🔥"])
@pytest.mark.parametrize("implementation", ALARM_SERIALISERS)
def test_al00_carries_channel_time_severity_and_message(implementation, severity, message):
    payload = implementation().serialise("ïon:PV", -5, Alarm(severity, "HIHI", message))
    assert payload[4:8] == b"al00"
    got = deserialise_al00(payload)
    assert (got.source, got.timestamp_ns, got.severity, got.message) == (
        "ïon:PV",
        -5,
        AL00[severity],
        message,
    )


@pytest.mark.parametrize("implementation", ALARM_SERIALISERS)
def test_al00_rejects_a_severity_it_has_no_member_for(implementation):
    with pytest.raises(UnsupportedValue, match="severity"):
        implementation().serialise("c", 1, Alarm(7, "HIHI", "x"))  # type: ignore[arg-type]


@pytest.mark.parametrize("implementation", ALARM_SERIALISERS)
def test_al00_timestamp_out_of_range_is_unsupported_value(implementation):
    with pytest.raises(UnsupportedValue, match="al00"):
        implementation().serialise("c", 2**64, Alarm())


@pytest.mark.parametrize("implementation", [Al00FastDataSerialiser, Al00DataSerialiser])
def test_al00_as_data_schema_sends_the_updates_alarm_and_ignores_the_value(implementation):
    serialiser = implementation("SIM:A")
    update = Update("SIM:A", "any value", 77, Alarm(Severity.MINOR, "LOW", "LOW"))
    got = deserialise_al00(serialiser.serialise(update))
    assert (got.source, got.timestamp_ns, got.severity, got.message) == (
        "SIM:A",
        77,
        Al00Severity.MINOR,
        "LOW",
    )


EP01 = {
    ConnectionStatus.NEVER_CONNECTED: ConnectionInfo.NEVER_CONNECTED,
    ConnectionStatus.CONNECTED: ConnectionInfo.CONNECTED,
    ConnectionStatus.DISCONNECTED: ConnectionInfo.DISCONNECTED,
    ConnectionStatus.DESTROYED: ConnectionInfo.DESTROYED,
    ConnectionStatus.UNKNOWN: ConnectionInfo.UNKNOWN,
}


@pytest.mark.parametrize("status", list(ConnectionStatus))
@pytest.mark.parametrize("service_id", [None, "", "forwarder_1", "ßervice"])
@pytest.mark.parametrize("implementation", CONNECTION_SERIALISERS)
def test_ep01_carries_every_status(implementation, status, service_id):
    payload = implementation().serialise("SIM:C", 1_700_000_000_000_000_000, status, service_id)
    assert payload[4:8] == b"ep01"
    got = deserialise_ep01(payload)
    assert (got.source_name, got.timestamp, got.status, got.service_id) == (
        "SIM:C",
        1_700_000_000_000_000_000,
        EP01[status],
        service_id or "",
    )


@pytest.mark.parametrize("implementation", CONNECTION_SERIALISERS)
def test_ep01_rejects_an_unknown_status(implementation):
    with pytest.raises(UnsupportedValue, match="connection state"):
        implementation().serialise("c", 1, "CONNECTED", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("schema", ["ep01", "no_op"])
def test_ep01_and_no_op_as_data_schemas_send_nothing(schema):
    serialiser = make_data_serialiser(schema, "c")
    for value in (np.float64(1), np.arange(3), "text"):
        assert serialiser.serialise(Update("c", value, 1, Alarm(Severity.MAJOR, "HIHI"))) is None


def check_al00_structure(buf: bytes) -> None:
    source, timestamp, severity, message = fb.table(buf, fb.root(buf, b"al00"), [4, 8, 2, 4])
    assert None not in (source, timestamp, severity, message)
    fb.string(buf, source)
    fb.string(buf, message)


def check_ep01_structure(buf: bytes, with_service_id: bool) -> None:
    timestamp, status, source, service = fb.table(buf, fb.root(buf, b"ep01"), [8, 2, 4, 4])
    assert None not in (timestamp, status, source)
    fb.string(buf, source)
    assert (service is not None) == with_service_id
    if with_service_id:
        fb.string(buf, service)


def test_fast_al00_reads_back_like_the_library_over_generated_cases():
    serialiser = Al00FastAlarmSerialiser()
    cases = list(itertools.product(TEXTS, TEXTS[::-1], TIMESTAMPS, list(Severity)))
    assert len(cases) > 1000
    for channel, message, timestamp, severity in cases:
        ours = serialiser.serialise(channel, timestamp, Alarm(severity, "HIHI", message))
        check_al00_structure(ours)
        reference = serialise_al00(channel, timestamp, AL00[severity], message)
        assert deserialise_al00(ours) == deserialise_al00(reference)


def test_fast_al00_data_serialiser_matches_the_alarm_serialiser():
    for channel, message in itertools.product(TEXTS, TEXTS):
        alarm = Alarm(Severity.INVALID, "UDF", message)
        ours = Al00FastDataSerialiser(channel).serialise(Update(channel, np.int8(1), 5, alarm))
        check_al00_structure(ours)
        assert ours == Al00FastAlarmSerialiser().serialise(channel, 5, alarm)


def test_fast_ep01_reads_back_like_the_library_over_generated_cases():
    serialiser = Ep01FastConnectionSerialiser()
    services = [None, *TEXTS]
    cases = list(itertools.product(TEXTS, services, TIMESTAMPS, list(ConnectionStatus)))
    assert len(cases) > 1000
    for channel, service_id, timestamp, status in cases:
        ours = serialiser.serialise(channel, timestamp, status, service_id)
        check_ep01_structure(ours, service_id is not None)
        reference = serialise_ep01(timestamp, EP01[status], channel, service_id)
        assert deserialise_ep01(ours) == deserialise_ep01(reference)


@pytest.mark.parametrize("bad", ["\ud800", None, 3])
def test_fast_writers_reject_text_they_cannot_encode(bad):
    with pytest.raises(UnsupportedValue):
        Al00FastAlarmSerialiser().serialise(bad, 1, Alarm())
    with pytest.raises(UnsupportedValue):
        Al00FastAlarmSerialiser().serialise("c", 1, Alarm(Severity.MINOR, "LOW", bad))
    with pytest.raises(UnsupportedValue):
        Ep01FastConnectionSerialiser().serialise(bad, 1, ConnectionStatus.CONNECTED, None)


def test_registry_uses_the_fast_writers():
    assert isinstance(alarm_serialiser(), Al00FastAlarmSerialiser)
    assert isinstance(connection_serialiser(), Ep01FastConnectionSerialiser)
    assert isinstance(make_data_serialiser("al00", "c"), Al00FastDataSerialiser)


def test_al00_data_channel_name_that_is_not_text_fails_per_update_not_at_creation():
    serialiser = make_data_serialiser("al00", "bad\ud800name")
    with pytest.raises(UnsupportedValue, match="channel name"):
        serialiser.serialise(Update("bad", np.float64(1), 1))
