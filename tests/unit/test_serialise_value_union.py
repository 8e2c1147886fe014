"""The union table read from the generated enums finds all ten numeric members of each schema."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_data_types.fbschemas.logdata_f142.Value import Value as F142Value
from streaming_data_types.fbschemas.logdata_f144.Value import Value as F144Value

from forwarder.serialise.value_union import F142_MEMBERS, F144_MEMBERS, NUMERIC_DTYPES

TEN = {
    "int8": "Byte", "uint8": "UByte", "int16": "Short", "uint16": "UShort", "int32": "Int",
    "uint32": "UInt", "int64": "Long", "uint64": "ULong", "float32": "Float", "float64": "Double",
}  # fmt: skip


def test_numeric_dtypes_are_the_ten():
    assert NUMERIC_DTYPES == {np.dtype(name) for name in TEN}


@pytest.mark.parametrize("members, union", [(F144_MEMBERS, F144Value), (F142_MEMBERS, F142Value)])
def test_each_dtype_has_its_schema_members_and_a_struct_code_of_its_size(members, union):
    assert set(members) == NUMERIC_DTYPES
    for dtype, (scalar, array, code) in members.items():
        name = TEN[dtype.name]
        assert (scalar, array) == (getattr(union, name), getattr(union, "Array" + name))
        assert np.dtype(code).itemsize == dtype.itemsize
        assert np.dtype(code).kind == dtype.kind
