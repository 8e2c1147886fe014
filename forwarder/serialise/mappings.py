"""Our alarm and connection states in each schema's own enums.

Kept apart from the writers so that every writer of a schema (and the tests' reference
writers) agrees on one mapping.

f142: status names are Alarm.status (EPICS spelling); "TIMEOUT" is f142's TIMED. An unknown
status name falls back to NO_ALARM when the severity is NO_ALARM and to UDF ("undefined")
otherwise, so an alarm is never hidden.
"""

from __future__ import annotations

from streaming_data_types.alarm_al00 import Severity as Al00Severity
from streaming_data_types.epics_connection_ep01 import ConnectionInfo
from streaming_data_types.fbschemas.logdata_f142.AlarmSeverity import AlarmSeverity
from streaming_data_types.fbschemas.logdata_f142.AlarmStatus import AlarmStatus

from forwarder.serialise.base import UnsupportedValue
from forwarder.update import Alarm, ConnectionStatus, Severity

# EPICS severity -> al00 severity (al00 calls "no alarm" OK).
AL00_SEVERITY = {
    Severity.NO_ALARM: Al00Severity.OK,
    Severity.MINOR: Al00Severity.MINOR,
    Severity.MAJOR: Al00Severity.MAJOR,
    Severity.INVALID: Al00Severity.INVALID,
}

EP01_STATUS = {
    ConnectionStatus.NEVER_CONNECTED: ConnectionInfo.NEVER_CONNECTED,
    ConnectionStatus.CONNECTED: ConnectionInfo.CONNECTED,
    ConnectionStatus.DISCONNECTED: ConnectionInfo.DISCONNECTED,
    ConnectionStatus.DESTROYED: ConnectionInfo.DESTROYED,
    ConnectionStatus.UNKNOWN: ConnectionInfo.UNKNOWN,
}

F142_SEVERITY = {
    Severity.NO_ALARM: AlarmSeverity.NO_ALARM,
    Severity.MINOR: AlarmSeverity.MINOR,
    Severity.MAJOR: AlarmSeverity.MAJOR,
    Severity.INVALID: AlarmSeverity.INVALID,
}

# Status name -> f142 AlarmStatus: every name the schema has (NO_CHANGE is for "same as the
# previous message", which we never send), plus the EPICS spelling of TIMED.
F142_STATUS = {
    name: number
    for name, number in vars(AlarmStatus).items()
    if not name.startswith("_") and name != "NO_CHANGE"
}
F142_STATUS["TIMEOUT"] = AlarmStatus.TIMED


def al00_severity(severity: Severity) -> Al00Severity:
    """The al00 severity of an EPICS severity; UnsupportedValue for anything else."""
    try:
        return AL00_SEVERITY[severity]
    except (KeyError, TypeError):
        raise UnsupportedValue(f"al00 has no severity for {severity!r}") from None


def ep01_status(status: ConnectionStatus) -> ConnectionInfo:
    """The ep01 ConnectionInfo of a connection status; UnsupportedValue for anything else."""
    try:
        return EP01_STATUS[status]
    except (KeyError, TypeError):
        raise UnsupportedValue(f"ep01 has no connection state for {status!r}") from None


def f142_alarm(alarm: Alarm) -> tuple[int, int]:
    """(status, severity) numbers of ``alarm`` in f142's enums, with the fallback above."""
    severity = F142_SEVERITY.get(alarm.severity)
    if severity is None:
        raise UnsupportedValue(f"f142 has no severity for {alarm.severity!r}")
    status = F142_STATUS.get(str(alarm.status).upper())
    if status is None:
        no_alarm = alarm.severity == Severity.NO_ALARM
        status = AlarmStatus.NO_ALARM if no_alarm else AlarmStatus.UDF
    return status, severity
