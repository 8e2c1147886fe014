"""The numeric members of the f144 and f142 Value unions, read from the schemas' own enums.

Both log-data schemas name a scalar member after its FlatBuffers type (Byte, Double, ...)
and its array member "Array" + that name. Reading the tags from the generated enums keeps
the one table of numpy dtype -> (scalar tag, array tag, struct code) in step with the
schemas instead of tabulating the ten dtypes by hand per writer.
"""

from __future__ import annotations

import numpy as np
from streaming_data_types.fbschemas.logdata_f142.Value import Value as F142Value
from streaming_data_types.fbschemas.logdata_f144.Value import Value as F144Value

# FlatBuffers' own scalar types (the schema language's, not any one schema's) ->
# (numpy dtype, little-endian struct code of one element).
FLATBUFFERS_SCALARS = {
    "byte": ("int8", "b"),
    "ubyte": ("uint8", "B"),
    "short": ("int16", "h"),
    "ushort": ("uint16", "H"),
    "int": ("int32", "i"),
    "uint": ("uint32", "I"),
    "long": ("int64", "q"),
    "ulong": ("uint64", "Q"),
    "float": ("float32", "f"),
    "double": ("float64", "d"),
}


def numeric_members(value_union: type) -> dict[np.dtype, tuple[int, int, str]]:
    """dtype -> (scalar union tag, array union tag, struct code) of a generated Value enum.

    Only members that are a FlatBuffers scalar type with an "Array" twin count, so
    String/ArrayString (f142) and NONE are left out.
    """
    members = {}
    for name, scalar_tag in vars(value_union).items():
        scalar = FLATBUFFERS_SCALARS.get(name.lower())
        array_tag = getattr(value_union, "Array" + name, None)
        if scalar is None or array_tag is None:
            continue
        dtype, code = scalar
        members[np.dtype(dtype)] = (scalar_tag, array_tag, code)
    return members


F144_MEMBERS = numeric_members(F144Value)
F142_MEMBERS = numeric_members(F142Value)

# The numeric dtypes every ESS log-data schema has a union member for.
NUMERIC_DTYPES = frozenset(F144_MEMBERS) & frozenset(F142_MEMBERS)
