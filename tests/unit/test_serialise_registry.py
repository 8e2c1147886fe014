"""The registry: every fc00 schema name gives a serialiser, anything else UnknownSchema."""

from __future__ import annotations

import numpy as np
import pytest

from forwarder.serialise import (
    UnknownSchema,
    alarm_serialiser,
    connection_serialiser,
    make_data_serialiser,
    valid_schemas,
)
from forwarder.update import Alarm, ConnectionStatus, Severity, Table, Update

# schema -> (a value it carries, the file identifier it sends, or None for "sends nothing")
SCHEMAS = {
    "f144": (np.float64(1.5), b"f144"),
    "f142": ("text", b"f142"),
    "al00": (np.float64(1.5), b"al00"),
    "ep01": (np.float64(1.5), None),
    "tdct": (np.array([1, 2]), b"tdct"),
    "no_op": (np.float64(1.5), None),
    "nttable_se00": (Table({"value": np.arange(2.0), "timestamp": np.arange(2)}), b"se00"),
    "nttable_senv": (Table({"value": np.arange(2), "timestamp": np.arange(2)}), b"senv"),
}


def test_every_protocols_schemas_are_covered():
    assert set(SCHEMAS) == valid_schemas("PVA") == valid_schemas("FAKE")
    assert valid_schemas("CA") == set(SCHEMAS) - {"nttable_se00", "nttable_senv"}


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_each_schema_sends_its_own_message(schema):
    value, identifier = SCHEMAS[schema]
    serialiser = make_data_serialiser(schema, "SIM:PV")
    payload = serialiser.serialise(Update("SIM:PV", value, 10, Alarm(Severity.MINOR, "LOW")))
    if identifier is None:
        assert payload is None
    else:
        assert isinstance(payload, bytes) and payload[4:8] == identifier


def test_each_call_makes_a_new_serialiser_per_stream():
    assert make_data_serialiser("tdct", "a") is not make_data_serialiser("tdct", "a")


@pytest.mark.parametrize("schema", ["F144", "f143", "", "nttable", None, 144])
def test_unknown_schema_names_raise_unknown_schema(schema):
    with pytest.raises(UnknownSchema, match="unknown schema"):
        make_data_serialiser(schema, "c")  # type: ignore[arg-type]


def test_alarm_and_connection_serialisers():
    assert alarm_serialiser().serialise("c", 1, Alarm())[4:8] == b"al00"
    assert (
        connection_serialiser().serialise("c", 1, ConnectionStatus.CONNECTED, None)[4:8] == b"ep01"
    )
