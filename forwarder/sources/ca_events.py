"""CA monitor subscriptions of numeric PVs that skip pyepics' per-event work.

pyepics turns every event into a dict of keyword arguments (channel cache lookup, ctypes
casts, metadata unpacking) before our callback sees it: about half of the CPU a CA update
cost (issue 11). For the numeric DBR_TIME types the forwarder subscribes with a callback of
its own instead:

* ``subscribe_native``: the C callback of ``_ca_queue``, which copies the header (status,
  severity, EPICS seconds and nanoseconds) and the values into the factory's event queue
  without entering Python on libca's thread. What the forwarder runs.
* ``subscribe``: a ctypes callback that reads the same buffer with ``read_update``. The
  Python reference the native queue is tested against (tests/unit/test_ca_queue.py), and
  the path of a source tree whose extension is not built.

Strings stay on pyepics' path (``ca_convert``), whose decoding they keep. Either way the
Update is the one ``ca_convert.update_from_ca`` makes from pyepics' arguments, value for
value and dtype for dtype (tests/sources/test_ca_source.py compares them on a real IOC).

Values are copied out of libca's buffer before the callback returns: libca reuses it.
"""

from __future__ import annotations

import ctypes
import struct
import threading

import numpy as np

from forwarder.sources.ca_convert import (
    EPICS_EPOCH_OFFSET_S,
    NUMPY_TYPES,
    TIME_OFFSET,
    alarm_of,
)
from forwarder.sources.thread_state import keep_thread_state
from forwarder.update import Update

ECA_NORMAL = 1
# The dbr_time_* prefix shared by every DBR_TIME type: status, severity, epicsTimeStamp.
_HEADER = struct.Struct("=hhII")
# DBR_TIME types read here: the numeric ones (not DBR_TIME_STRING).
DIRECT_TYPES = frozenset(t + TIME_OFFSET for t in NUMPY_TYPES)
_DTYPES = {t + TIME_OFFSET: np.dtype(np_type) for t, np_type in NUMPY_TYPES.items()}

_callback = None  # the one C callback, made when libca is loaded (under _lock)
_lock = threading.Lock()
_value_offsets: dict[int, int] = {}


def _on_event(args) -> None:
    """libca thread: one monitor event; ``args.usr`` is the subscriber's handler."""
    keep_thread_state()
    handler = args.usr
    if args.status != ECA_NORMAL:
        return  # e.g. read access lost; the connection callback reports disconnects
    try:
        update = read_update(handler.channel, args.type, args.count, args.raw_dbr)
    except Exception as error:
        handler.failed(error)
        return
    handler.update(update)


def read_update(channel: str, ftype: int, count: int, address: int) -> Update:
    """The Update held in a DBR_TIME buffer of ``count`` values of type ``ftype``."""
    dtype = _DTYPES[ftype]
    offset = _value_offsets[ftype]
    head = ctypes.string_at(address, _HEADER.size)
    status, severity, secs, nsec = _HEADER.unpack(head)
    if count == 1:
        value = np.frombuffer(ctypes.string_at(address + offset, dtype.itemsize), dtype)[0]
    else:
        value = np.empty(count, dtype)
        ctypes.memmove(value.ctypes.data, address + offset, count * dtype.itemsize)
    return Update(
        channel=channel,
        value=value,
        timestamp_ns=(secs + EPICS_EPOCH_OFFSET_S) * 1_000_000_000 + nsec,
        alarm=alarm_of(status, severity),
    )


class Handler:
    """What a subscription calls: ``update(Update)`` or ``failed(error)``, on libca threads."""

    __slots__ = ("channel", "update", "failed")

    def __init__(self, channel: str, update, failed):
        self.channel = channel
        self.update = update
        self.failed = failed


def subscribe(ca, chid, ftype: int, mask: int, handler: Handler) -> tuple:
    """``ca_create_subscription`` of ``ftype`` (one of DIRECT_TYPES) with count 0 (each event
    has the PV's current length); returns (callback, user argument, event id): keep it
    alive, and clear the subscription with ``ca.clear_subscription(<event id>)``."""
    from epics import dbr

    callback = _c_callback(ca.libca, dbr)
    user = ctypes.py_object(handler)
    return (callback, user, _create_subscription(ca, chid, ftype, mask, callback, user))


def subscribe_native(ca, chid, ftype: int, mask: int, events, slot: int) -> tuple:
    """``ca_create_subscription`` whose events go to ``events``' native queue under ``slot``,
    through the queue's C callback: they never enter Python on libca's thread."""
    callback = ctypes.c_void_p(events.callback)
    user = ctypes.c_void_p(events.user_arg(slot))
    return (None, None, _create_subscription(ca, chid, ftype, mask, callback, user))


def _create_subscription(ca, chid, ftype: int, mask: int, callback, user) -> ctypes.c_void_p:
    """libca's subscription with count 0; its event id."""
    from epics import dbr

    if isinstance(chid, int):
        chid = dbr.chid_t(chid)
    event_id = ctypes.c_void_p()
    status = ca.libca.ca_create_subscription(
        ftype, 0, chid, mask, callback, user, ctypes.byref(event_id)
    )
    if status != ECA_NORMAL:
        raise RuntimeError(f"ca_create_subscription failed: {ca.message(status)}")
    return event_id


def _c_callback(libca, dbr):
    """The C callback, made once: subscriptions are made on several libca threads at once,
    and a callback object that nothing references any more would be freed under libca."""
    global _callback
    with _lock:
        if _callback is None:
            offsets = (39 * ctypes.c_short).in_dll(libca, "dbr_value_offset")
            _value_offsets.update({t: offsets[t] for t in DIRECT_TYPES})
            _callback = ctypes.CFUNCTYPE(None, dbr.event_handler_args)(_on_event)
        return _callback
