"""Which implementation serialises each schema.

Data schemas are named as in fc00 config messages. Two of them send no values of their own:
as a DATA schema, "al00" makes each update's data message the al00 of the update's alarm,
and "ep01" sends no data message at all (its data serialiser returns None; connection status
goes out as ep01 for every stream anyway). "no_op" likewise sends nothing but al00/ep01.

f144, f142, al00 and ep01 use our own byte-template writers (f144.py, f142.py, al00.py,
ep01.py; 10-100x faster than the library). f142's library writer is broken under numpy 2, so
f142_builder.py holds our Builder-based one, used for string arrays. tdct, se00 and senv use
the ess-streaming-data-types library.
"""

from __future__ import annotations

from collections.abc import Callable

from forwarder.serialise.al00 import Al00FastAlarmSerialiser, Al00FastDataSerialiser
from forwarder.serialise.base import (
    AlarmSerialiser,
    ConnectionSerialiser,
    DataSerialiser,
    UnknownSchema,
)
from forwarder.serialise.ep01 import Ep01FastConnectionSerialiser
from forwarder.serialise.f142 import F142FastSerialiser
from forwarder.serialise.f144 import F144FastSerialiser
from forwarder.serialise.no_op import NoOpSerialiser
from forwarder.serialise.nttable import Se00Serialiser, SenvSerialiser
from forwarder.serialise.tdct import TdctSerialiser

DATA_SERIALISERS: dict[str, Callable[[str], DataSerialiser]] = {
    "f144": F144FastSerialiser,
    "f142": F142FastSerialiser,
    "al00": Al00FastDataSerialiser,
    "ep01": NoOpSerialiser,  # ep01 goes out for every stream anyway
    "tdct": TdctSerialiser,
    "no_op": NoOpSerialiser,
    "nttable_se00": Se00Serialiser,
    "nttable_senv": SenvSerialiser,
}


def data_serialiser(schema: str, channel: str) -> DataSerialiser:
    """A new serialiser for one stream; UnknownSchema if ``schema`` is not one of ours."""
    try:
        make = DATA_SERIALISERS[schema]
    except (KeyError, TypeError):
        known = ", ".join(sorted(DATA_SERIALISERS))
        raise UnknownSchema(f"unknown schema {schema!r}; known schemas: {known}") from None
    return make(channel)


def alarm() -> AlarmSerialiser:
    """The al00 serialiser shared by all streams."""
    return Al00FastAlarmSerialiser()


def connection() -> ConnectionSerialiser:
    """The ep01 serialiser shared by all streams."""
    return Ep01FastConnectionSerialiser()
