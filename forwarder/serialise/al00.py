"""al00 alarm messages: EPICS severity and alarm message of a PV.

Used twice: as every stream's alarm serialiser, and as the data serialiser of a stream whose
fc00 schema is "al00" (then each update's data message IS the al00 of its alarm). The
severity mapping lives here; these library-backed classes are the reference that the faster
writers in al00_fast.py (which the registry uses) are tested against.
"""

from __future__ import annotations

from streaming_data_types.alarm_al00 import Severity as Al00Severity
from streaming_data_types.alarm_al00 import serialise_al00

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.update import Alarm, Severity, Update

# EPICS severity -> al00 severity (al00 calls "no alarm" OK).
AL00_SEVERITY = {
    Severity.NO_ALARM: Al00Severity.OK,
    Severity.MINOR: Al00Severity.MINOR,
    Severity.MAJOR: Al00Severity.MAJOR,
    Severity.INVALID: Al00Severity.INVALID,
}


def al00_severity(severity: Severity) -> Al00Severity:
    """The al00 severity of an EPICS severity; UnsupportedValue for anything else."""
    try:
        return AL00_SEVERITY[severity]
    except (KeyError, TypeError):
        raise UnsupportedValue(f"al00 has no severity for {severity!r}") from None


class Al00AlarmSerialiser:
    """The alarm serialiser of every stream (library-backed)."""

    def serialise(self, channel: str, timestamp_ns: int, alarm: Alarm) -> bytes:
        severity = al00_severity(alarm.severity)
        with value_errors_as_unsupported("al00"):
            return serialise_al00(channel, timestamp_ns, severity, alarm.message)


class Al00DataSerialiser:
    """Data schema "al00": each update becomes the al00 of its alarm; the value is ignored."""

    def __init__(self, channel: str, alarms: Al00AlarmSerialiser | None = None) -> None:
        self._channel = channel
        self._alarms = alarms or Al00AlarmSerialiser()

    def serialise(self, update: Update) -> bytes:
        return self._alarms.serialise(self._channel, update.timestamp_ns, update.alarm)
