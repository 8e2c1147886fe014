"""CA callback arguments -> Update, without libca."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from forwarder.sources.alarm_names import CA_ALARM_STATUS_NAMES, ca_status_name
from forwarder.sources.ca_convert import (
    DBR_CHAR,
    DBR_DOUBLE,
    DBR_ENUM,
    DBR_FLOAT,
    DBR_LONG,
    DBR_SHORT,
    DBR_STRING,
    TIME_OFFSET,
    alarm_of,
    convert_value,
    update_from_ca,
)
from forwarder.update import Alarm, Severity


@pytest.mark.parametrize(
    "ftype, raw, np_type",
    [
        (DBR_DOUBLE, 1.5, np.float64),
        (DBR_FLOAT, 1.5, np.float32),
        (DBR_LONG, -7, np.int32),
        (DBR_SHORT, -7, np.int16),
        (DBR_CHAR, 200, np.uint8),
        (DBR_ENUM, 3, np.uint16),  # DBR_ENUM is unsigned 16-bit
    ],
)
def test_source_ca_scalar_types(ftype, raw, np_type):
    value = convert_value(raw, ftype + TIME_OFFSET)
    assert type(value) is np_type and value == raw


def test_source_ca_arrays_keep_length_and_single_elements_become_scalars():
    array = convert_value(np.array([1, 2, 3], dtype=np.int32), DBR_LONG + TIME_OFFSET)
    assert array.dtype == np.int32 and array.tolist() == [1, 2, 3]
    one = convert_value(np.array([9], dtype=np.uint8), DBR_CHAR + TIME_OFFSET)
    assert type(one) is np.uint8 and one == 9
    chars = convert_value(np.array([104, 105], dtype=np.uint8), DBR_CHAR + TIME_OFFSET)
    assert isinstance(chars, np.ndarray) and chars.dtype == np.uint8
    empty = convert_value(np.array([], dtype=np.float64), DBR_DOUBLE + TIME_OFFSET)
    assert isinstance(empty, np.ndarray) and empty.size == 0


def test_source_ca_one_element_char_waveform_from_pyepics_becomes_a_scalar():
    """pyepics gives a multi-element char waveform holding 1 element as a ctypes array (no
    numpy for count 1): it must become a scalar like every other 1-element waveform."""
    one = convert_value((ctypes.c_ubyte * 1)(200), DBR_CHAR + TIME_OFFSET)
    assert type(one) is np.uint8 and one == 200
    two = convert_value((ctypes.c_ubyte * 2)(1, 2), DBR_CHAR + TIME_OFFSET)
    assert isinstance(two, np.ndarray) and two.dtype == np.uint8 and two.tolist() == [1, 2]


def test_source_ca_strings():
    assert convert_value("abc", DBR_STRING + TIME_OFFSET) == "abc"
    assert convert_value(["a", "b"], DBR_STRING + TIME_OFFSET) == ("a", "b")
    assert convert_value(["only"], DBR_STRING + TIME_OFFSET) == "only"
    assert convert_value([], DBR_STRING + TIME_OFFSET) == ()


def test_source_ca_unknown_type_is_an_error_not_a_crash():
    with pytest.raises(ValueError, match="unsupported CA field type"):
        convert_value(1, 7 + TIME_OFFSET)


def test_source_ca_alarm_names_follow_alarm_h():
    assert len(CA_ALARM_STATUS_NAMES) == 22
    assert ca_status_name(3) == "HIHI" and ca_status_name(17) == "UDF"
    assert ca_status_name(21) == "WRITE_ACCESS" and ca_status_name(99) == "UDF"
    assert alarm_of(0, 0) == Alarm(Severity.NO_ALARM, "NO_ALARM", "NO_ALARM")  # as ESS
    assert alarm_of(4, 1) == Alarm(Severity.MINOR, "HIGH", "HIGH")
    assert alarm_of(17, 3) == Alarm(Severity.INVALID, "UDF", "UDF")
    assert alarm_of(9, 7).severity == Severity.INVALID  # out-of-range severity


def test_source_ca_timestamp_keeps_nanoseconds():
    # pyepics passes posixseconds as a float of whole seconds plus integer nanoseconds.
    kwargs = dict(
        ftype=DBR_DOUBLE + TIME_OFFSET,
        posixseconds=631152000.0 + 1_069_000_000,
        nanoseconds=999_999_999,
        status=0,
        severity=0,
    )
    update = update_from_ca("PV", 2.0, kwargs)
    assert update.timestamp_ns == 1_700_152_000_999_999_999
    assert update.channel == "PV"
    assert update.alarm == Alarm(Severity.NO_ALARM, "NO_ALARM", "NO_ALARM")
