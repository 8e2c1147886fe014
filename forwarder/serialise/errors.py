"""Turns a serialising library's own complaints about a value into UnsupportedValue.

flatbuffers raises TypeError for out-of-range numbers, struct raises struct.error, encoders
raise UnicodeError; the stream logic only needs to handle UnsupportedValue.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from forwarder.serialise.base import UnsupportedValue


@contextmanager
def value_errors_as_unsupported(schema: str) -> Iterator[None]:
    """Re-raise the library errors a bad value causes as UnsupportedValue naming ``schema``."""
    try:
        yield
    except UnsupportedValue:
        raise
    except (TypeError, ValueError, OverflowError, UnicodeError, struct.error) as error:
        raise UnsupportedValue(f"{schema} cannot carry this update: {error}") from error
