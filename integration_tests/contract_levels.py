"""Contract levels: every integration test says whose promise it checks.

  ess        what the ESS forwarder's documentation and the streaming schemas promise: any
             drop-in forwarder must pass these (``-m ess`` is the conformance suite);
  extension  our own promises beyond that (SIGTERM flush, Prometheus, NEVER_CONNECTED
             timing, per-stream status, drop accounting, ...);
  rig        tests of the rig itself (test_rig_*.py, test_docker_clean.py), not of a forwarder.

A test with no level or two is refused before anything runs, so that the counts per level
(terminal summary and JUnit XML) always add up to the whole run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

LEVELS = {
    "ess": "ESS contract: what the ESS forwarder's documentation and the schemas promise",
    "extension": "our own promises beyond the ESS contract",
    "rig": "tests of the integration-test rig itself, not of a forwarder",
}
OUTCOMES = ("passed", "failed", "error", "skipped")
SUITE_DIR = Path(__file__).resolve().parent
# Files that test the rig, not a forwarder: these (and only these) carry `rig`.
RIG_FILES = ("test_rig_*.py", "test_docker_clean.py")


def register_markers(config: pytest.Config) -> None:
    for name, meaning in LEVELS.items():
        config.addinivalue_line("markers", f"{name}: contract level: {meaning}")


def is_rig_file(path: Path) -> bool:
    return any(path.match(pattern) for pattern in RIG_FILES)


def levels_of(item: pytest.Item) -> list[str]:
    """The level markers on ``item`` (its own, its class's and its module's), once each."""
    return sorted({mark.name for mark in item.iter_markers() if mark.name in LEVELS})


def level_problem(item: pytest.Item) -> str | None:
    """Why ``item``'s levels are wrong, or None when it has exactly the right one."""
    levels = levels_of(item)
    test = item.nodeid.split("[")[0]  # one line for all parameters of a test
    if len(levels) != 1:
        found = ", ".join(levels) if levels else "none"
        return f"{test}: needs exactly one of ess/extension/rig, has {found}"
    rig_file = is_rig_file(item.path)
    if rig_file and levels != ["rig"]:
        return f"{test}: tests the rig, so its level is `rig`, not {levels[0]}"
    if not rig_file and levels == ["rig"]:
        return f"{test}: `rig` is only for {' and '.join(RIG_FILES)}"
    return None


class ContractLevels:
    """Checks the levels at collection, then counts outcomes per level for the summary and
    the JUnit XML."""

    def __init__(self) -> None:
        self.level_by_nodeid: dict[str, str] = {}
        self.outcome_by_nodeid: dict[str, str] = {}

    # First, before -k/-m deselect anything: a test with a wrong level is refused even when
    # this run would not select it.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]):
        problems = []
        for item in items:
            if SUITE_DIR not in item.path.parents:
                continue
            problem = level_problem(item)
            if problem:
                if problem not in problems:
                    problems.append(problem)
                continue
            level = levels_of(item)[0]
            self.level_by_nodeid[item.nodeid] = level
            item.user_properties.append(("level", level))
        if problems:
            raise pytest.UsageError(
                "integration tests without exactly one contract level (mark each with "
                "@pytest.mark.ess, @pytest.mark.extension or, for rig tests, "
                "@pytest.mark.rig):\n  " + "\n  ".join(problems)
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Under pytest-xdist this process did not collect: the level comes with the report.
        level = self.level_by_nodeid.get(report.nodeid) or dict(report.user_properties).get(
            "level"
        )
        if level is None:
            return
        self.level_by_nodeid[report.nodeid] = level
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if report.when != "call" and report.outcome == "failed":
                outcome = "error"
            if self.outcome_by_nodeid.get(report.nodeid) not in ("failed", "error"):
                self.outcome_by_nodeid[report.nodeid] = outcome

    def counts(self) -> dict[str, Counter]:
        """{level: Counter(outcome)} over the tests that ran."""
        table: dict[str, Counter] = {level: Counter() for level in LEVELS}
        for nodeid, outcome in self.outcome_by_nodeid.items():
            table[self.level_by_nodeid[nodeid]][outcome] += 1
        return table

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the counts as suite properties (``level.ess.passed`` = N, ...) before the
        JUnit plugin writes its file."""
        xml = _junit_writer(session.config)
        if xml is None:
            return
        for level, counts in self.counts().items():
            for outcome in OUTCOMES:
                xml.add_global_property(f"level.{level}.{outcome}", str(counts[outcome]))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        table = self.counts()
        if not any(table.values()):
            return
        terminalreporter.section("results per contract level")
        for line in format_counts(table):
            terminalreporter.write_line(line)


def format_counts(table: dict[str, Counter]) -> list[str]:
    """One line per level that ran: ``ess        12 passed, 1 failed, ...``."""
    lines = []
    for level, counts in table.items():
        if counts:
            parts = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
            lines.append(f"{level:<10} {sum(counts.values()):>4} tests: {parts}")
    return lines


def _junit_writer(config: pytest.Config):
    """pytest's JUnit XML writer when --junitxml is on, else None."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without it just gets no suite counts
        return None
    return config.stash.get(xml_key, None)
