"""Micro-benchmark: µs per message, our serialisers against ess-streaming-data-types'.

Each figure is the median over REPEATS runs of (time for N calls) / N, timed with
time.perf_counter. Figures depend heavily on the machine and its load.
Run:  python bench/serialise_bench.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from streaming_data_types import serialise_al00, serialise_ep01, serialise_f144
from streaming_data_types.alarm_al00 import Severity as Al00Severity
from streaming_data_types.epics_connection_ep01 import ConnectionInfo

from forwarder.serialise import alarm_serialiser, connection_serialiser, make_data_serialiser
from forwarder.serialise.f142_builder import F142Serialiser
from forwarder.update import Alarm, ConnectionStatus, Severity, Update

REPEATS = 7
CALLS = 2000
CHANNEL = "SIM:BENCH:SIGNAL"
TIMESTAMP = 1_700_000_000_123_456_789


def median_us(call) -> float:
    """Median µs per call of ``call()`` over REPEATS batches of CALLS calls."""
    call()  # warm-up
    per_call = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(CALLS):
            call()
        per_call.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(per_call)


def cases():
    """(name, ours as the registry gives it, the reference writer)."""
    f144 = make_data_serialiser("f144", CHANNEL)
    scalar = Update(CHANNEL, np.float64(21.5), TIMESTAMP)
    array = Update(CHANNEL, np.linspace(0.0, 1.0, 1000), TIMESTAMP)
    alarm = Alarm(Severity.MAJOR, "HIHI", "HIHI")
    alarms, connections = alarm_serialiser(), connection_serialiser()
    f142 = make_data_serialiser("f142", CHANNEL)
    f142_builder = F142Serialiser(CHANNEL)
    f142_update = Update(CHANNEL, np.float64(21.5), TIMESTAMP, alarm)
    return [
        (
            "f144 scalar double",
            lambda: f144.serialise(scalar),
            lambda: serialise_f144(CHANNEL, scalar.value, TIMESTAMP),
        ),
        (
            "f144 1000 doubles",
            lambda: f144.serialise(array),
            lambda: serialise_f144(CHANNEL, array.value, TIMESTAMP),
        ),
        (
            "al00",
            lambda: alarms.serialise(CHANNEL, TIMESTAMP, alarm),
            lambda: serialise_al00(CHANNEL, TIMESTAMP, Al00Severity.MAJOR, "HIHI"),
        ),
        (
            "ep01",
            lambda: connections.serialise(CHANNEL, TIMESTAMP, ConnectionStatus.CONNECTED, "fwd"),
            lambda: serialise_ep01(TIMESTAMP, ConnectionInfo.CONNECTED, CHANNEL, "fwd"),
        ),
        # The library's serialise_f142 raises under numpy 2 (np.unicode_); the reference here
        # is our Builder-based f142 writer, which drives flatbuffers the library's way.
        (
            "f142 scalar double *",
            lambda: f142.serialise(f142_update),
            lambda: f142_builder.serialise(f142_update),
        ),
    ]


def main() -> None:
    print(f"{'message':<22} {'ours µs':>9} {'library µs':>11} {'speed-up':>9}")
    for name, ours, library in cases():
        ours_us = median_us(ours)
        library_us = median_us(library)
        print(f"{name:<22} {ours_us:>9.2f} {library_us:>11.2f} {library_us / ours_us:>8.1f}x")
    print("* reference: our Builder-based f142 writer (the library's is broken under numpy 2)")
    print(f"median of {REPEATS} x {CALLS} calls; a busy shared machine inflates all figures")


if __name__ == "__main__":
    main()
