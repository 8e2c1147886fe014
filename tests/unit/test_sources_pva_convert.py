"""Raw p4p Values -> Update, built locally with p4p's types (no network)."""

from __future__ import annotations

import numpy as np
import pytest
from p4p.nt import NTEnum, NTScalar, NTTable
from p4p.wrapper import Type, Value

from forwarder.sources.pva_convert import alarm_of, update_from_pva
from forwarder.update import Alarm, Severity, Table


def test_source_pva_scalar_and_array_types():
    v = NTScalar("H").wrap(65535)
    assert type(update_from_pva("P", v).value) is np.uint16
    arr = NTScalar("af").wrap(np.array([1.0, 2.0], dtype=np.float32))
    value = update_from_pva("P", arr).value
    assert value.dtype == np.float32 and value.tolist() == [1.0, 2.0]
    one = update_from_pva("P", NTScalar("al").wrap(np.array([5], dtype=np.int64))).value
    assert type(one) is np.int64 and one == 5
    assert update_from_pva("P", NTScalar("as").wrap(["s"])).value == "s"


def test_source_pva_enum_table_and_timestamp():
    e = NTEnum().wrap({"index": 2, "choices": ["a", "b", "c"]}, timestamp=(10, 20))
    update = update_from_pva("P", e)
    assert type(update.value) is np.int32 and update.value == 2
    assert update.timestamp_ns == 10_000_000_020
    t = NTTable([("a", "l"), ("b", "s")]).wrap([{"a": 1, "b": "x"}])
    table = update_from_pva("P", t).value
    assert isinstance(table, Table) and table.columns["a"].dtype == np.int64
    assert table.columns["b"].tolist() == ["x"]


def test_source_pva_unsupported_structure_raises_value_error():
    v = Value(Type([("value", ("S", "odd_t", [("x", "i")]))]), {"value": {"x": 1}})
    with pytest.raises(ValueError, match="unsupported PVA structure"):
        update_from_pva("P", v)


def test_source_pva_alarm_status_names():
    assert alarm_of(0, 0, "") == Alarm(Severity.NO_ALARM, "NO_ALARM", "")
    assert alarm_of(1, 1, "LOW") == Alarm(Severity.MINOR, "LOW", "LOW")
    # Not a CA status name: derived from alarm.status, message kept for al00.
    assert alarm_of(3, 2, "link down") == Alarm(Severity.INVALID, "COMM", "link down")
    assert alarm_of(2, 0, "custom").status == "STATE"  # alarmed, so never "NO_ALARM"
    assert alarm_of(9, 42, "").severity == Severity.INVALID
    assert alarm_of(2, 42, "").status == "UDF"
