"""Keep one Python thread state per foreign EPICS callback thread for the thread's life.

A ctypes callback entered from a thread Python did not start (libca's, PVXS's) creates a
Python thread state on entry and destroys it on exit: about 8 µs per update (an mmap, a
munmap and a gettid each, measured in issue 11), more than the rest of the callback. One
extra ``PyGILState_Ensure`` that is never released keeps the state, so every later callback
on that thread reuses it.

The marker is thread-local data, which lives in the thread state itself: a new thread (even
one with a reused thread id) has no marker and gets its state kept in turn. When a kept
thread ends (libca ends a circuit's thread when its IOC goes away) its state stays allocated
until the interpreter finalises: about 17 KB per ended thread.
"""

from __future__ import annotations

import ctypes
import threading

_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int
_ensure.argtypes = ()
_marker = threading.local()


def keep_thread_state() -> None:
    """Call from inside a callback (the GIL is held); a getattr after a thread's first call."""
    if not getattr(_marker, "kept", False):
        _ensure()
        _marker.kept = True
