"""Every record type of the rig's IOC, forwarded as f144 and f142 over CA and PVA.

Values, dtypes (the FlatBuffers union member), the PV-name source and the EPICS timestamp
(read back over the same protocol, to the nanosecond) must all be exact. The initial value
arrives on subscribe; later puts arrive in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from helpers.flatbuffers_helpers import describe, values_equal
from helpers.pvs import BY_SUFFIX, TIME_FROM_LINK, TS_NEW, TS_OLD
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream, epics_read, epics_write

TIMEOUT = 20.0


@dataclass(frozen=True)
class Case:
    suffix: str
    initial: object
    puts: tuple  # later values, each distinct from the one before
    ca: tuple[str, type]  # (union member, dtype) over CA
    pva: tuple[str, type]  # ... over PVA

    def expected_type(self, protocol: str) -> tuple[str, type]:
        return self.ca if protocol == "CA" else self.pva


def _case(suffix: str, ca: tuple[str, type], pva: tuple[str, type]) -> Case:
    """The record ``suffix`` of helpers.pvs (its initial value and puts), with the union
    member and dtype the forwarder must send for it over CA and PVA."""
    pv = BY_SUFFIX[suffix]
    return Case(suffix, pv.initial, pv.puts, ca, pva)


# CA has no 64-bit integers (INT64 arrives as double) and carries enums as unsigned 16-bit
# indices (DBR_ENUM) and chars as unsigned bytes.
NUMERIC = (
    _case("DOUBLE", ("Double", np.float64), ("Double", np.float64)),
    _case("FLOAT", ("Float", np.float32), ("Float", np.float32)),
    _case("SHORT", ("Short", np.int16), ("Short", np.int16)),
    _case("LONG", ("Int", np.int32), ("Int", np.int32)),
    _case("INT64", ("Double", np.float64), ("Long", np.int64)),
    _case("CHAR_WAVEFORM", ("ArrayUByte", np.uint8), ("ArrayByte", np.int8)),
    _case("MBBO", ("UShort", np.uint16), ("Int", np.int32)),
    _case("BO", ("UShort", np.uint16), ("Int", np.int32)),
    _case("DOUBLE_ARRAY", ("ArrayDouble", np.float64), ("ArrayDouble", np.float64)),
    _case("FLOAT_ARRAY", ("ArrayFloat", np.float32), ("ArrayFloat", np.float32)),
    _case("LONG_ARRAY", ("ArrayInt", np.int32), ("ArrayInt", np.int32)),
    _case("SHORT_ARRAY", ("ArrayShort", np.int16), ("ArrayShort", np.int16)),
    _case("INT64_ARRAY", ("ArrayDouble", np.float64), ("ArrayLong", np.int64)),
)

STRINGS = (
    _case("STRING", ("String", str), ("String", str)),
    _case("STRING_ARRAY", ("ArrayString", str), ("ArrayString", str)),
)


def _check(message, case: Case, protocol: str, expected_value, expected_ts: int) -> list[str]:
    """What is wrong with ``message`` (an f144/f142 of ``case``), as readable lines."""
    problems = []
    value_type, dtype = case.expected_type(protocol)
    if message.value_type != value_type:
        problems.append(f"union type {message.value_type}, expected {value_type}")
    if dtype is str:
        if isinstance(expected_value, (tuple, list)):
            ok = isinstance(message.value, tuple) and list(message.value) == list(expected_value)
        else:
            ok = message.value == expected_value
    else:
        ok = values_equal(message.value, np.asarray(expected_value, dtype=dtype), dtype)
    if not ok:
        problems.append(f"value {message.value!r}, expected {expected_value!r} as {dtype}")
    if message.timestamp_ns != expected_ts:
        problems.append(
            f"timestamp {message.timestamp_ns}, EPICS get says {expected_ts} "
            f"(diff {message.timestamp_ns - expected_ts} ns)"
        )
    return [f"{case.suffix}: {p} -- {describe(message)}" for p in problems]


def _forward_all(protocol, schema, cases, ioc, epics_network, forwarder, control, outputs, topics):
    """Configure every case as ``schema`` over ``protocol``; wait for each initial value.

    Returns the reader of their topic.
    """
    topic = topics.new("data")
    reader = outputs(topic)
    streams = [Stream(ioc.pv(c.suffix), schema, topic, protocol) for c in cases]
    control.add_and_wait(streams, reader, timeout=TIMEOUT)
    return reader


def _initial_values_are_exact(protocol, schema, cases, ioc, epics_network, reader):
    problems = []
    for c in cases:
        name = ioc.pv(c.suffix)
        first = reader.messages(schema, name)[0]
        reading = epics_read(protocol, epics_network, name)
        problems += _check(first, c, protocol, c.initial, reading["timestamp_ns"])
    assert not problems, f"{schema} over {protocol}:\n" + "\n".join(problems)


def _later_puts_arrive_in_order(protocol, schema, cases, ioc, epics_network, reader):
    expected: dict[str, list[tuple[object, int]]] = {}
    for c in cases:
        name = ioc.pv(c.suffix)
        expected[name] = [(c.initial, epics_read(protocol, epics_network, name)["timestamp_ns"])]
    for step in range(2):
        for c in cases:
            name = ioc.pv(c.suffix)
            value = c.puts[step]
            epics_write(name, list(value) if isinstance(value, tuple) else value)
            ts = epics_read(protocol, epics_network, name)["timestamp_ns"]
            expected[name].append((value, ts))
    problems = []
    for c in cases:
        name = ioc.pv(c.suffix)
        got = reader.wait_for_count(
            3,
            schema=schema,
            source=name,
            timeout=TIMEOUT,
            what=f"initial value and 2 puts of {name} as {schema} over {protocol}",
        )
        if len(got) != 3:
            problems.append(
                f"{c.suffix}: {len(got)} messages for 3 values: " + "; ".join(map(describe, got))
            )
            continue
        for message, (value, ts) in zip(got, expected[name], strict=True):
            problems += _check(message, c, protocol, value, ts)
    assert not problems, f"{schema} over {protocol}:\n" + "\n".join(problems)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f144_initial_value_of_every_numeric_record_type_is_exact(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    reader = _forward_all(
        protocol, "f144", NUMERIC, ioc, epics_network, forwarder, control, outputs, topics
    )
    _initial_values_are_exact(protocol, "f144", NUMERIC, ioc, epics_network, reader)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f144_later_puts_of_every_numeric_record_type_arrive_in_order(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    reader = _forward_all(
        protocol, "f144", NUMERIC, ioc, epics_network, forwarder, control, outputs, topics
    )
    _later_puts_arrive_in_order(protocol, "f144", NUMERIC, ioc, epics_network, reader)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f142_initial_value_of_every_record_type_including_strings_is_exact(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    cases = NUMERIC + STRINGS
    reader = _forward_all(
        protocol, "f142", cases, ioc, epics_network, forwarder, control, outputs, topics
    )
    _initial_values_are_exact(protocol, "f142", cases, ioc, epics_network, reader)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f142_later_puts_of_every_record_type_including_strings_arrive_in_order(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    cases = NUMERIC + STRINGS
    reader = _forward_all(
        protocol, "f142", cases, ioc, epics_network, forwarder, control, outputs, topics
    )
    _later_puts_arrive_in_order(protocol, "f142", cases, ioc, epics_network, reader)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f142_messages_without_alarm_carry_no_alarm_status_and_severity(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    cases = NUMERIC + STRINGS
    reader = _forward_all(
        protocol, "f142", cases, ioc, epics_network, forwarder, control, outputs, topics
    )
    wrong = [
        describe(m)
        for c in cases
        for m in reader.messages("f142", ioc.pv(c.suffix))
        if (m.alarm_status, m.alarm_severity) != ("NO_ALARM", "NO_ALARM")
    ]
    assert not wrong, "f142 of records in no alarm state carry an alarm:\n" + "\n".join(wrong)


# Multi-element waveforms given one element: (suffix, value, CA union member, PVA member).
ONE_ELEMENT = (
    ("DOUBLE_ARRAY", 6.5, "Double", "Double"),
    ("LONG_ARRAY", 7, "Int", "Int"),
    ("CHAR_WAVEFORM", 65, "UByte", "Byte"),
)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_element_put_to_a_waveform_arrives_as_a_scalar(
    protocol, ioc, forwarder, control, outputs, topics
):
    """A waveform holding one element is a scalar to consumers (the ESS forwarder squeezes
    it), over CA and PVA alike."""
    topic = topics.new("one")
    reader = outputs(topic)
    streams = [Stream(ioc.pv(suffix), "f144", topic, protocol) for suffix, *_ in ONE_ELEMENT]
    control.add_and_wait(streams, reader, timeout=TIMEOUT)
    for suffix, value, _, _ in ONE_ELEMENT:
        epics_write(ioc.pv(suffix), [value])
    problems = []
    for suffix, value, ca_type, pva_type in ONE_ELEMENT:
        message = reader.wait_for_count(2, schema="f144", source=ioc.pv(suffix), timeout=TIMEOUT)[1]
        expected = ca_type if protocol == "CA" else pva_type
        if message.value_type != expected or np.ndim(message.value) != 0:
            problems.append(f"{suffix}: expected a {expected} scalar -- {describe(message)}")
        elif float(message.value) != value:
            problems.append(f"{suffix}: value {message.value!r}, expected {value}")
    assert not problems, "\n".join(problems)


@pytest.mark.extension
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_update_not_newer_than_the_last_forwarded_one_is_dropped_and_the_next_newer_is_sent(
    protocol, ioc, forwarder, control, outputs, topics
):
    """Consumers rely on time order per PV: an update with the same or an older EPICS
    timestamp than the last one forwarded is dropped (the ESS forwarder drops only older
    ones), and forwarding goes on with the next newer one."""
    name, link = ioc.pv(TIME_FROM_LINK), ioc.pv(TIME_FROM_LINK) + ".TSEL"
    old_time, new_time = ioc.pv(TS_OLD) + ".TIME", ioc.pv(TS_NEW) + ".TIME"
    topic = topics.new("order")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, protocol)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)

    def put(value, time_from=None):
        if time_from is not None:
            if time_from == new_time:
                epics_write(ioc.pv(TS_NEW), value)  # TS_NEW gets the current time
            epics_write(link, time_from)
        epics_write(name, value)
        return epics_read("CA", None, name)["timestamp_ns"]

    stamps = {2: put(2, new_time), 3: put(3), 4: put(4, old_time), 5: put(5, new_time)}
    # The rig made the timestamps the test needs:
    assert stamps[3] == stamps[2] and stamps[4] < stamps[2] < stamps[5], stamps
    reader.wait_for_message(
        lambda m: m.schema == "f144" and float(m.value) == 5,
        timeout=TIMEOUT,
        what=f"{name} = 5 (newer again)",
    )
    got = [float(m.value) for m in reader.messages("f144", name)]
    assert got == [1, 2, 5], f"forwarded {got}; timestamps {stamps}"
