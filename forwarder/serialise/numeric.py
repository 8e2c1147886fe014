"""Checks that an update's value is a number or a 1-D array of numbers a schema can carry.

Our f144 and f142 writers all accept the same numeric values, so the rules (which
dtypes, what happens to booleans, which error for strings) live here once.
"""

from __future__ import annotations

import numpy as np

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.value_union import NUMERIC_DTYPES
from forwarder.update import Table

_UINT8 = np.dtype("uint8")


def as_numeric(value: object, schema: str) -> np.ndarray | np.generic:
    """``value`` as a numpy scalar or 1-D array of a dtype in NUMERIC_DTYPES.

    Booleans become uint8 0/1 (no schema has a bool member). Python ints and floats are
    accepted as int64 / float64, 0-D arrays as scalars. Strings, tables, other dtypes and N-D arrays raise
    UnsupportedValue naming ``schema``.
    """
    if isinstance(value, (str, tuple)):
        raise UnsupportedValue(f"{schema} cannot carry strings; use f142")
    if isinstance(value, Table):
        raise UnsupportedValue(f"{schema} cannot carry tables; use nttable_se00 or nttable_senv")
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            value = value[()]
        elif value.ndim != 1:
            raise UnsupportedValue(f"{schema} carries scalars and 1-D arrays, not {value.ndim}-D")
    elif not isinstance(value, np.generic):
        if isinstance(value, (bool, int, float)):
            value = np.asarray(value)[()]
        else:
            raise UnsupportedValue(f"{schema} cannot carry a value of type {type(value).__name__}")
    dtype = value.dtype
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
        value = value.astype(dtype)
    if dtype.kind == "b":
        return value.astype(_UINT8)
    if dtype.kind in "US":
        raise UnsupportedValue(f"{schema} cannot carry strings; use f142")
    if dtype not in NUMERIC_DTYPES:
        raise UnsupportedValue(f"{schema} cannot carry values of dtype {dtype}")
    return value
