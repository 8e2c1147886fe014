"""Pass/fail counts per contract level from a JUnit XML of the integration suite, as the
Markdown table of docs/conformance.md, plus the failing tests of each level.

    python3 -m helpers.conformance_counts logs/junit-integration.xml

Reads the ``level`` property the suite puts on every testcase, so it needs no pytest.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter

OUTCOMES = ("passed", "failed", "error", "skipped")


def outcome_of(testcase: ET.Element) -> str:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        if testcase.find(tag) is not None:
            return outcome
    return "passed"


def level_of(testcase: ET.Element) -> str:
    for prop in testcase.iterfind("properties/property"):
        if prop.get("name") == "level":
            return prop.get("value", "?")
    return "?"


def read(path: str) -> tuple[dict[str, Counter], list[tuple[str, str, str, str]]]:
    """({level: Counter(outcome)}, [(level, outcome, test id, first line of the message)])."""
    counts: dict[str, Counter] = {}
    failing = []
    for case in ET.parse(path).iter("testcase"):
        level, outcome = level_of(case), outcome_of(case)
        counts.setdefault(level, Counter())[outcome] += 1
        if outcome in ("failed", "error"):
            detail = case.find("failure") if outcome == "failed" else case.find("error")
            message = (detail.get("message") or "").strip().splitlines()
            test = f"{case.get('classname')}::{case.get('name')}"
            failing.append((level, outcome, test, message[0] if message else ""))
    return counts, failing


def table(counts: dict[str, Counter]) -> list[str]:
    lines = ["| level | tests | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for level in sorted(counts):
        c = counts[level]
        cells = " | ".join(str(c[o]) for o in OUTCOMES)
        lines.append(f"| {level} | {sum(c.values())} | {cells} |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    counts, failing = read(argv[0])
    print("\n".join(table(counts)))
    if failing:
        print()
        for level, outcome, test, message in failing:
            print(f"- [{level}] {outcome}: `{test}`: {message[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
