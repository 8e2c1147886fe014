"""The test PVs of ioc/test.db and ioc/table_server.py, as data.

Each entry says what the record is, what CA and PVA clients (and so the forwarder) see for
it, its initial value and two distinct values a test can put. The contract tests in
integration_tests/test_rig_epics.py check every entry against the running IOC.

Choices worth knowing:
  * FLOAT and SHORT are 1-element waveforms (NELM 1): CA count 1 (pyepics gives a scalar;
    the forwarder must turn a 1-element array into a scalar), and QSRV serves a NELM=1
    waveform as an NTScalar, not an NTScalarArray.
  * INT64 (int64out) and INT64_ARRAY: CA has no 64-bit integer, so CA delivers them as
    DOUBLE; PVA delivers int64.
  * CHAR_WAVEFORM: CA delivers uint8 (DBR_CHAR), PVA (QSRV) delivers int8.
  * CHOPPER_TIMESTAMPS is a LONG (int32) waveform of ns offsets, so that CA and PVA both
    deliver exact integers (int32); an INT64 waveform would arrive over CA as double.
  * EMPTY_ARRAY starts with two elements; tests empty it with a PVA put of a 0-length array
    (pyepics cannot put 0 elements: it replaces count 0 by the full length). CA monitors
    of the record then see a 0-length update too.
  * Enums (MBBO, BO): CA type ENUM with the index as value; PVA NTEnum (value.index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TestPv:
    """One record of ioc/test.db."""

    __test__ = False  # not a pytest test class

    suffix: str
    record_type: str
    ca_type: str  # DBR type name as pyepics spells it without "time_": double, long, ...
    ca_count: int  # element count of the initial value over CA
    pva_id: str  # NT type: NTScalar, NTScalarArray, NTEnum
    pva_dtype: str | None  # numpy dtype of the PVA value (None for str, str arrays, enums)
    initial: object
    puts: tuple[object, object]  # two distinct values to put, different from initial
    has_alarms: bool = False

    @property
    def is_array(self) -> bool:
        return self.pva_id == "NTScalarArray"


# fmt: off
TEST_PVS: tuple[TestPv, ...] = (
    TestPv("DOUBLE", "ao", "double", 1, "NTScalar", "float64", 1.5, (3.25, -4.5), True),
    TestPv("FLOAT", "waveform", "float", 1, "NTScalar", "float32", 2.5, (0.5, -1.5)),
    TestPv("SHORT", "waveform", "short", 1, "NTScalar", "int16", 7, (8, -9)),
    TestPv("LONG", "longout", "long", 1, "NTScalar", "int32", 42, (43, -100_000)),
    TestPv(
        "INT64", "int64out", "double", 1, "NTScalar", "int64", 5_000_000_000,
        (5_000_000_001, -6_000_000_000),
    ),
    TestPv(
        "CHAR_WAVEFORM", "waveform", "char", 5, "NTScalarArray", "int8",
        [104, 101, 108, 108, 111], ([119, 111, 114, 108, 100, 33], [65, 66]),
    ),
    TestPv("STRING", "stringout", "string", 1, "NTScalar", None, "hello", ("world", "again")),
    TestPv("MBBO", "mbbo", "enum", 1, "NTEnum", None, 1, (2, 3)),
    TestPv("BO", "bo", "enum", 1, "NTEnum", None, 0, (1, 0)),
    TestPv(
        "DOUBLE_ARRAY", "waveform", "double", 3, "NTScalarArray", "float64",
        [1.5, 2.5, 3.5], ([4.0, 5.0], [6.5, 7.5, 8.5, 9.5]),
    ),
    TestPv(
        "FLOAT_ARRAY", "waveform", "float", 3, "NTScalarArray", "float32",
        [0.5, 1.5, 2.5], ([3.5, 4.5], [5.5, 6.5, 7.5, 8.5]),
    ),
    TestPv(
        "LONG_ARRAY", "waveform", "long", 3, "NTScalarArray", "int32",
        [10, 20, 30], ([40, 50], [-1, -2, -3, -4]),
    ),
    TestPv(
        "SHORT_ARRAY", "waveform", "short", 3, "NTScalarArray", "int16",
        [1, 2, 3], ([4, 5], [-6, -7, -8, -9]),
    ),
    TestPv(
        "INT64_ARRAY", "waveform", "double", 3, "NTScalarArray", "int64",
        [5_000_000_000, 6_000_000_000, 7_000_000_000], ([8_000_000_000, 9_000_000_000], [-1, -2, -3, -4]),
    ),
    TestPv(
        "STRING_ARRAY", "waveform", "string", 3, "NTScalarArray", None,
        ["alpha", "beta", "gamma"], (["delta", "epsilon"], ["x", "y", "z", "w"]),
    ),
    TestPv(
        "CHOPPER_TIMESTAMPS", "waveform", "long", 3, "NTScalarArray", "int32",
        [1000, 71_000_000, 142_000_000], ([10, 20], [30, 40, 50, 60]),
    ),
    TestPv(
        "EMPTY_ARRAY", "waveform", "double", 2, "NTScalarArray", "float64",
        [9.5, 8.5], ([1.0], [2.0, 3.0]),
    ),
)
# fmt: on

BY_SUFFIX = {pv.suffix: pv for pv in TEST_PVS}

# NTTables of ioc/table_server.py: columns value (float64) and timestamp (uint64 ns).
TABLE = "TABLE"
EMPTY_TABLE = "EMPTY_TABLE"
TABLE_COLUMNS = {"value": np.float64, "timestamp": np.uint64}
TABLE_INITIAL_VALUES = [1.5, 2.5, 3.5]  # the timestamps are the server's start time + i ms
# An NTTable like TABLE with int64 values: senv carries integer samples only.
INT_TABLE = "INT_TABLE"


# Timestamps a test chooses (ioc/test.db): TIME_FROM_LINK (ao, initial value 1) takes its
# EPICS timestamp from the record its TSEL link points at. Put TSEL (the link text, e.g.
# ``ioc.pv(TS_OLD) + ".TIME"``) to TS_OLD.TIME (processed once at IOC start) for an old
# timestamp, to TS_NEW.TIME after a put to TS_NEW for the current time; puts to
# TIME_FROM_LINK without either keep the same timestamp.
TIME_FROM_LINK = "TIME_FROM_LINK"
TS_OLD = "TS_OLD"
TS_NEW = "TS_NEW"


# Load for fault tests (ioc/test.db): COUNTER_COUNT calc records CNT:000 … CNT:099 that each
# add 1 every 0.1 s while CNT:RUN is 1 (it starts at 0). Over CA and PVA they are doubles.
COUNTER_RUN = "CNT:RUN"
COUNTER_COUNT = 100


def counter_suffixes(count: int = COUNTER_COUNT) -> list[str]:
    """Suffixes of the first ``count`` load counters."""
    if not 0 < count <= COUNTER_COUNT:
        raise ValueError(f"the test IOC has {COUNTER_COUNT} counters, not {count}")
    return [f"CNT:{i:03d}" for i in range(count)]


def counter_breaks(values) -> list[tuple[float, float]]:
    """The (previous, next) pairs of a forwarded counter series that do not step by +1:
    empty when nothing was lost, duplicated or reordered."""
    values = [float(v) for v in values]
    return [(a, b) for a, b in zip(values, values[1:], strict=False) if b != a + 1]
