"""The native CA event queue (forwarder/sources/_ca_queue.c) against the Python path.

Events go in through the queue's real libca callback (``inject`` calls it with a DBR_TIME
buffer laid out by pyepics' ctypes structures, as db_access.h defines them) and must come out
as the Update ca_events.read_update makes from the same buffer: the same value, numpy type,
timestamp and alarm, and the same f144 bytes, which the schema library reads back. The queue
contract (order, batches, a full queue waiting instead of dropping, closing) is pinned for
both the native queue and its Python stand-in.
"""

from __future__ import annotations

import ctypes
import logging
import threading

import numpy as np
import pytest
from epics import dbr
from streaming_data_types import deserialise_f144

from forwarder.serialise import make_data_serialiser
from forwarder.sources import ca_events
from forwarder.sources.ca_convert import alarm_of
from forwarder.sources.ca_dispatch import CaDispatcher, PyEventQueue, native_queue
from forwarder.update import Update
from helpers.polling import wait_until
from tests.unit.test_ca_events import LAYOUTS, buffer

ECA_NORMAL = 1
ECA_DISCONN = 192  # what libca gives a subscription's callback when access is lost


@pytest.fixture(autouse=True)
def offsets(monkeypatch):
    monkeypatch.setattr(
        ca_events, "_value_offsets", {t: s.value.offset for t, (s, _) in LAYOUTS.items()}
    )


def from_queue(ftype, values, status=3, severity=1, secs=1_000_000_000, nsec=123_456_789):
    """(native Update, Python-path Update) of one DBR_TIME buffer."""
    raw = buffer(ftype, values)
    head = LAYOUTS[ftype][0].from_buffer(raw)
    head.status, head.severity = status, severity
    head.stamp.secs, head.stamp.nsec = secs, nsec
    queue = native_queue()
    queue.inject(5, ftype, len(values), bytes(raw))
    ((slot, value, timestamp_ns, got_status, got_severity),) = queue.take(1.0)
    assert slot == 5
    native = Update("PV", value, timestamp_ns, alarm_of(got_status, got_severity))
    return native, ca_events.read_update("PV", ftype, len(values), ctypes.addressof(raw))


def same(a: Update, b: Update) -> bool:
    return (
        type(a.value) is type(b.value)
        and np.asarray(a.value).dtype == np.asarray(b.value).dtype
        and np.array_equal(a.value, b.value)
        and (a.channel, a.timestamp_ns, a.alarm) == (b.channel, b.timestamp_ns, b.alarm)
    )


@pytest.mark.parametrize("ftype", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "values", [[7], [1, 2, 3], [], list(range(1000))], ids=["scalar", "3", "empty", "1000"]
)
def test_every_numeric_type_comes_out_as_the_python_path_reads_it(ftype, values):
    np_type = LAYOUTS[ftype][1]
    values = np.asarray(values).astype(np_type).tolist()  # what the type can hold
    native, python = from_queue(ftype, values)
    assert same(native, python), (native, python)


@pytest.mark.parametrize("ftype", sorted(LAYOUTS))
def test_extremes_of_each_type_and_of_the_header(ftype):
    info = np.finfo if LAYOUTS[ftype][1] in (np.float32, np.float64) else np.iinfo
    limits = info(LAYOUTS[ftype][1])
    native, python = from_queue(
        ftype, [limits.min, limits.max], status=21, severity=3, secs=2**32 - 1, nsec=999_999_999
    )
    assert same(native, python), (native, python)
    native, python = from_queue(ftype, [limits.max], status=0, severity=0, secs=0, nsec=0)
    assert same(native, python), (native, python)


@pytest.mark.parametrize("ftype", sorted(LAYOUTS))
@pytest.mark.parametrize("values", [[7], [1, 2, 3]])
def test_f144_bytes_are_the_python_paths_and_read_back(ftype, values):
    serialiser = make_data_serialiser("f144", "PV")
    native, python = from_queue(ftype, values)
    payload = serialiser.serialise(native)
    assert payload == serialiser.serialise(python)
    read = deserialise_f144(payload)
    assert np.array_equal(np.ravel(read.value), values) and read.source_name == "PV"
    assert read.timestamp_unix_ns == python.timestamp_ns


def test_an_array_is_copied_before_the_callback_returns():
    raw = bytearray(bytes(buffer(dbr.TIME_DOUBLE, [1.0, 2.0])))
    queue = native_queue()
    queue.inject(1, dbr.TIME_DOUBLE, 2, raw)
    raw[:] = bytes(len(raw))  # libca reuses its buffer
    ((_, value, *_),) = queue.take(1.0)
    assert value.tolist() == [1.0, 2.0] and value.flags.writeable


def test_an_event_libca_marks_failed_is_not_queued():
    queue = native_queue()
    queue.inject(1, dbr.TIME_DOUBLE, 1, bytes(buffer(dbr.TIME_DOUBLE, [1.0])), ECA_DISCONN)
    assert queue.take(0.01) == [] and queue.stats()["events"] == 0


def queues():
    return [pytest.param(native_queue, id="native"), pytest.param(PyEventQueue, id="python")]


@pytest.mark.parametrize("make", queues())
def test_calls_and_events_keep_the_order_they_were_queued_in(make):
    queue = make()
    for i in range(5):
        queue.put(i, f"call {i}")
        if isinstance(queue, PyEventQueue):
            continue
        queue.inject(i, dbr.TIME_LONG, 1, bytes(buffer(dbr.TIME_LONG, [i])))
    got = [(slot, value) for slot, value, _, _, _ in queue.take(1.0)]
    expected = [(i, f"call {i}") for i in range(5)]
    if not isinstance(queue, PyEventQueue):
        expected = [e for i in range(5) for e in ((i, f"call {i}"), (i, i))]
    assert got == expected


@pytest.mark.parametrize("make", queues())
def test_a_full_queue_makes_the_caller_wait_and_loses_nothing(make):
    queue = make(max_records=2)
    sent = threading.Thread(target=lambda: [queue.put(1, i) for i in range(50)])
    sent.start()
    got: list = []

    def all_taken():
        got.extend(value for _, value, _, _, _ in queue.take(0.05))
        return len(got) == 50

    wait_until(all_taken, timeout=10, what="50 calls through a queue of 2")
    sent.join(5)
    assert got == list(range(50))


@pytest.mark.parametrize("make", queues())
def test_take_times_out_empty_and_ends_with_none_once_closed(make):
    queue = make()
    assert queue.take(0.01) == []
    queue.put(1, "last")
    queue.close()
    assert [v for _, v, _, status, _ in queue.take(1.0)] == ["last"]
    assert queue.take(1.0) is None
    assert queue.put(1, "late") is False
    assert queue.stats()["dropped"] == 1


def test_a_waiting_caller_is_released_by_close():
    queue = native_queue(max_records=1)
    queue.put(1, "fills it")
    done = threading.Event()
    threading.Thread(target=lambda: (queue.put(1, "waits"), done.set()), daemon=True).start()
    queue.close()
    assert done.wait(5), "put still waiting after close"


class Channel:
    def __init__(self):
        self.seen = []

    def native_event(self, value, timestamp_ns, status, severity):
        self.seen.append((threading.current_thread().name, int(value), status))


def test_the_dispatcher_hands_events_to_their_channel_on_its_thread_in_order():
    events = CaDispatcher()
    assert events.native
    channel = Channel()
    slot = events.register(channel)
    gone = events.register(Channel())
    events.unregister(gone)
    events.start()
    try:
        events.queue.inject(gone, dbr.TIME_LONG, 1, bytes(buffer(dbr.TIME_LONG, [9])))
        events.queue.inject(slot, dbr.TIME_LONG, 1, bytes(buffer(dbr.TIME_LONG, [1])))
        events.put(slot, lambda: channel.seen.append(("call", threading.current_thread().name)))
        events.queue.inject(slot, dbr.TIME_LONG, 1, bytes(buffer(dbr.TIME_LONG, [2])))
        wait_until(lambda: len(channel.seen) == 3, timeout=5, what="3 events", seen=channel.seen)
    finally:
        events.close()
    assert channel.seen == [("ca-events", 1, 3), ("call", "ca-events"), ("ca-events", 2, 3)]


def test_without_the_extension_the_factory_says_so_and_takes_the_python_queue(
    monkeypatch, caplog
):
    from forwarder.sources import ca_dispatch
    from forwarder.sources.ca import CaSourceFactory

    monkeypatch.setattr(ca_dispatch, "Queue", None)
    with caplog.at_level(logging.WARNING, logger="forwarder.sources.ca"):
        events = CaSourceFactory()._start_events()
    try:
        assert not events.native and isinstance(events.queue, PyEventQueue)
        assert "not built" in caplog.text
    finally:
        events.close()
