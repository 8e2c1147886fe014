"""Quiet under faults: while the broker is unreachable, the forwarder's log says so at once
and then summarises, at most one line per kind of problem every 10 s, instead of flooding."""

from __future__ import annotations

import math
import re
import time
from collections import Counter

import pytest

from integration_tests.forwarder_fixtures import Stream, epics_write, stop_broker

TIMEOUT = 30.0
OUTAGE_S = 25.0
SUMMARY_INTERVAL_S = 10.0
SUMMARY_COUNT = re.compile(r" \(\d+ more in the last [\d.]+ s\)$")
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (WARNING|ERROR|CRITICAL) (\S+): (.*)$"
)



def _problem_lines(forwarder) -> list[str]:
    """The WARNING and worse lines in the forwarder's recent log, in order."""
    return [line for line in forwarder.log_tail(5000).splitlines() if LOG_LINE.match(line)]


def _kind(line: str) -> str:
    """What stays the same between lines of one kind: level, logger and the words of the
    message, with every number (ports, addresses, counts, milliseconds) taken out."""
    level, logger, message = LOG_LINE.match(line).groups()
    message = SUMMARY_COUNT.sub("", message)  # a summary is a line of the kind it counts
    return f"{level} {logger}: {re.sub(r'[0-9]+', '#', message)}"


@pytest.mark.extension
@pytest.mark.slow
def test_an_unreachable_broker_gives_at_most_one_line_per_kind_every_10_s(
    kafka, ioc, forwarder, control, outputs, topics
):
    names = [ioc.pv("DOUBLE"), ioc.pv("LONG"), ioc.pv("SHORT")]
    topic = topics.new("quiet")
    reader = outputs(topic)
    streams = [Stream(name, "f144", topic) for name in names]
    control.add_and_wait(streams, reader, timeout=TIMEOUT)

    before = set(_problem_lines(forwarder))
    during: dict[str, None] = {}  # lines written during the outage, in order, once each
    started = time.monotonic()
    stop_broker(kafka)
    try:
        # The outage is the scenario: OUTAGE_S s with the PVs changing, the log sampled
        # about once a second (its tail is bounded) so no line goes unseen.
        value = 0
        while time.monotonic() - started < OUTAGE_S:
            value += 1
            for name in names:
                epics_write(name, float(value))
            during.update(dict.fromkeys(line for line in _problem_lines(forwarder)))
            time.sleep(1.0)
        during.update(dict.fromkeys(_problem_lines(forwarder)))
        outage_s = time.monotonic() - started
        assert forwarder.is_running(), "the forwarder died while the broker was down"
    finally:
        if not kafka.is_running():
            kafka.start()

    lines = [line for line in during if line not in before]
    per_kind = Counter(_kind(line) for line in lines)
    print(
        f"{len(lines)} WARNING/ERROR lines in {outage_s:.1f} s of outage: "
        f"{len(lines) / outage_s:.2f}/s, {len(per_kind)} kinds"
    )
    for kind, count in per_kind.most_common():
        print(f"  {count:4d}  {kind[:200]}")
    assert lines, "nothing logged while the broker was unreachable: an outage must be seen"
    assert any(SUMMARY_COUNT.search(line) for line in lines), "no line says what it stands for"
    allowed = math.ceil(outage_s / SUMMARY_INTERVAL_S) + 1
    noisy = {kind: count for kind, count in per_kind.items() if count > allowed}
    assert not noisy, f"more than {allowed} lines of a kind in {outage_s:.0f} s: {noisy}"

    # After the outage the forwarder goes on forwarding.
    epics_write(names[0], 999.0)
    reader.wait_for_message(
        lambda m: m.schema == "f144" and m.source == names[0] and float(m.value) == 999.0,
        timeout=60.0,
        what="the first update after the outage",
    )
