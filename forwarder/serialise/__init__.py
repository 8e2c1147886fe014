"""Serialisers: updates in, ESS streaming FlatBuffers out.

The rest of the forwarder uses only the three functions below; which implementation sits
behind a schema (the ess-streaming-data-types library or our own fast writers) is decided
here and nowhere else.
"""

from __future__ import annotations

from forwarder.serialise.base import (
    AlarmSerialiser,
    ConnectionSerialiser,
    DataSerialiser,
    UnknownSchema,
    UnsupportedValue,
)

# Schemas a stream may name in an fc00 ADD, per protocol.
SCHEMAS_ALL_PROTOCOLS = frozenset({"f144", "f142", "al00", "ep01", "tdct", "no_op"})
SCHEMAS_TABLE = frozenset({"nttable_se00", "nttable_senv"})  # PVA and FAKE only


def valid_schemas(protocol: str) -> frozenset[str]:
    """The schemas allowed for ``protocol`` ("CA", "PVA" or "FAKE")."""
    if protocol.upper() == "CA":
        return SCHEMAS_ALL_PROTOCOLS
    return SCHEMAS_ALL_PROTOCOLS | SCHEMAS_TABLE


def make_data_serialiser(schema: str, channel: str) -> DataSerialiser:
    """The serialiser for one stream. Raises UnknownSchema."""
    from forwarder.serialise.registry import data_serialiser

    return data_serialiser(schema, channel)


def alarm_serialiser() -> AlarmSerialiser:
    from forwarder.serialise.registry import alarm

    return alarm()


def connection_serialiser() -> ConnectionSerialiser:
    from forwarder.serialise.registry import connection

    return connection()


__all__ = [
    "AlarmSerialiser",
    "ConnectionSerialiser",
    "DataSerialiser",
    "UnknownSchema",
    "UnsupportedValue",
    "valid_schemas",
    "make_data_serialiser",
    "alarm_serialiser",
    "connection_serialiser",
]
