"""Fixtures of the integration suite: ``kafka``, ``epics_network``, ``ioc``, ``table_server``,
``topics`` and the forwarder fixtures.

Tests never learn how the parts run. ``--backend`` picks local processes or docker
containers (``auto``: docker when an engine answers). The forwarder under test is:
  * ``--local-build PATH``: PATH's forwarder (``PATH/bin/forwarder``, or an ESS-compatible
    source checkout with ``forwarder_launch.py``), run on this machine;
  * otherwise, on the docker backend, the containerised build;
  * otherwise, on the local backend, our own ``./build``, made or refreshed here.
"""

from __future__ import annotations

import itertools
import re
import signal
import uuid
from pathlib import Path

import pytest

from helpers.rig.api import ForwarderSpec
from helpers.rig.backend import choose_backend, make_rig
from helpers.rig.forwarder_build import (
    DEFAULT_BUILD,
    BuildNotFound,
    ForwarderBuild,
    ensure_build,
    launch_command,
    librdkafka_version,
)
from integration_tests.contract_levels import ContractLevels, register_markers

pytest_plugins = ["integration_tests.forwarder_fixtures"]  # the per-configuration fixtures

_parts_key = pytest.StashKey[list]()
_choice_key = pytest.StashKey[object]()
_build_key = pytest.StashKey[object]()
_librdkafka_key = pytest.StashKey[str]()
LOG_TAIL_LINES = 40
FORWARDER_READY_TIMEOUT = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("forwarder rig")
    group.addoption(
        "--local-build",
        metavar="PATH",
        default=None,
        help="directory of a local forwarder build (PATH/bin/forwarder, or an ESS-compatible "
        "source checkout with forwarder_launch.py) to test instead of the containerised one",
    )
    group.addoption(
        "--local-build-python",
        metavar="PATH_TO_PYTHON",
        default=None,
        help="with --local-build: the interpreter to run that forwarder with (a venv or conda "
        "env with its dependencies); default: PATH's own .venv, venv or bin/python",
    )
    group.addoption(
        "--wait-to-attach-debugger",
        action="store_true",
        default=False,
        help="with --local-build: print each forwarder's PID and wait for Enter",
    )
    group.addoption(
        "--backend",
        choices=("auto", "local", "docker"),
        default="auto",
        help="run Kafka, the IOC and the forwarder as local processes or docker containers "
        "(auto: docker when an engine answers)",
    )
    group.addoption(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        default=None,
        help="use this running broker instead of starting one (SASL and broker-restart "
        "tests are skipped)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--wait-to-attach-debugger") and not config.getoption("--local-build"):
        raise pytest.UsageError(
            "--wait-to-attach-debugger needs --local-build PATH: only a forwarder running on "
            "this machine can be attached to"
        )
    if config.getoption("--wait-to-attach-debugger") and config.getoption("numprocesses", 0):
        raise pytest.UsageError(
            "--wait-to-attach-debugger waits for Enter, which parallel workers cannot read: "
            "add -n 0"
        )
    config.stash[_build_key] = _local_build(config)
    config.addinivalue_line(
        "markers", "long_running: hours-long soak tests, off by default (-m long_running)"
    )
    config.addinivalue_line(
        "markers", "docker: needs the docker backend (skipped on the local one)"
    )
    config.addinivalue_line(
        "markers",
        "slow: takes over 20 s by design (an outage's length, a 10 s log window); scheduled "
        "first, so that parallel workers finish together",
    )
    register_markers(config)
    config.pluginmanager.register(ContractLevels(), "contract-levels")
    # A SIGTERM (CI timeout, `kill`) unwinds like Ctrl-C, so that every fixture still stops
    # what it started.
    signal.signal(signal.SIGTERM, _terminate)


def _local_build(config: pytest.Config) -> ForwarderBuild | None:
    """The --local-build under test, checked now so that a build that cannot run fails the
    run before any test, saying what was looked for."""
    path, python = config.getoption("--local-build"), config.getoption("--local-build-python")
    if python and not path:
        raise pytest.UsageError("--local-build-python needs --local-build PATH")
    if not path:
        return None
    build = ForwarderBuild(Path(path), Path(python) if python else None)
    try:
        launch_command(build)
    except BuildNotFound as exc:
        raise pytest.UsageError(str(exc)) from None
    return build


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"pytest received signal {signum}")


def _backend_choice(config: pytest.Config):
    """The rig backend of this run, chosen once (it may probe for a Docker engine)."""
    choice = config.stash.get(_choice_key, None)
    if choice is None:
        choice = config.stash[_choice_key] = choose_backend(config.getoption("--backend"))
    return choice


def pytest_report_header(config: pytest.Config) -> list[str]:
    choice = _backend_choice(config)
    lines = [f"rig backend: {choice.backend} ({choice.reason})"]
    build = config.stash.get(_build_key, None)
    if build is not None:
        version = librdkafka_version(build)
        config.stash[_librdkafka_key] = version
        argv = " ".join(launch_command(build))
        lines.append(f"forwarder under test: {argv} (librdkafka {version})")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The longest first: a long test started last would keep one worker busy alone.
    items.sort(key=lambda item: "slow" not in item.keywords)
    choice = _backend_choice(config)
    if choice.backend != "docker":
        needs_docker = pytest.mark.skip(
            reason=f"needs the docker backend; this run's backend is {choice.backend} "
            f"({choice.reason})"
        )
        for item in items:
            if item.get_closest_marker("docker"):
                item.add_marker(needs_docker)
    if "long_running" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="long-running soak test; run with -m long_running")
    for item in items:
        if "long_running" in item.keywords:
            item.add_marker(skip)


# -- diagnostics ------------------------------------------------------------------------------


def _watch(request: pytest.FixtureRequest, label: str, part) -> None:
    """Show ``part``'s log tail in the report if the test fails."""
    request.node.stash.setdefault(_parts_key, []).append((label, part))


@pytest.fixture
def watch(request: pytest.FixtureRequest):
    """watch(label, part): show ``part``'s log tail in the report if the test fails, for
    parts a test starts itself (``part.log_tail(lines)`` and ``part.log_path``)."""
    return lambda label, part: _watch(request, label, part)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        parts = list(item.stash.get(_parts_key, []))
        kafka = item.config.stash.get(_kafka_key, None)
        if kafka is not None:
            parts.append(("kafka", kafka))
        for label, part in parts:
            try:
                text = part.log_tail(LOG_TAIL_LINES)
                where = part.log_path
            except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the failure
                text, where = f"(no log: {exc})", "?"
            report.sections.append((f"{label} log tail ({where})", text or "(empty)"))
    return report


# -- the parts --------------------------------------------------------------------------------

_kafka_key = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def rig(pytestconfig: pytest.Config):
    choice = _backend_choice(pytestconfig)
    build = pytestconfig.stash.get(_build_key, None)
    if build is None and choice.backend == "local":
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        say = reporter.write_line if reporter else print
        say(f"no --local-build on the local backend: testing our own build at {DEFAULT_BUILD}")
        build = ensure_build(DEFAULT_BUILD, log=say)
        pytestconfig.stash[_librdkafka_key] = librdkafka_version(build)
        say(f"our build's librdkafka: {pytestconfig.stash[_librdkafka_key]}")
    the_rig = make_rig(
        choice, local_build=build, kafka_bootstrap=pytestconfig.getoption("--kafka-bootstrap")
    )
    yield the_rig
    the_rig.close()


@pytest.fixture(scope="session")
def forwarder_librdkafka(rig, pytestconfig: pytest.Config) -> str | None:
    """The librdkafka version of the forwarder under test; None for the containerised one."""
    return pytestconfig.stash.get(_librdkafka_key, None)


@pytest.fixture(scope="session")
def kafka(rig, pytestconfig: pytest.Config):
    broker = rig.kafka()
    pytestconfig.stash[_kafka_key] = broker
    return broker


@pytest.fixture(scope="session")
def epics_network(rig):
    """The rig's EPICS ports; this test process's CA/PVA clients are set up to use them."""
    from helpers.epics_helpers import configure_client_env

    network = rig.epics_network()
    configure_client_env(network)
    return network


_prefixes = itertools.count(1)


@pytest.fixture
def pv_prefix() -> str:
    """A PV prefix no other test (nor another rig on this machine) uses."""
    return f"T{next(_prefixes)}{uuid.uuid4().hex[:5]}:"


@pytest.fixture
def ioc_not_started(request, rig, epics_network, pv_prefix):
    ioc = rig.ioc(pv_prefix)
    _watch(request, "ioc", ioc)
    yield ioc
    if ioc.is_running():
        ioc.stop()


@pytest.fixture
def ioc(ioc_not_started):
    ioc_not_started.start()
    return ioc_not_started


@pytest.fixture
def table_server(request, rig, epics_network, pv_prefix):
    server = rig.table_server(pv_prefix)
    _watch(request, "table server", server)
    server.start()
    yield server
    if server.is_running():
        server.stop()


class Topics:
    """Makes topics named after the test, so that tests never share one."""

    def __init__(self, bootstrap: str, test_name: str):
        self._bootstrap = bootstrap
        self._stem = re.sub(r"[^A-Za-z0-9._-]+", "_", test_name)[:80]

    def new(self, label: str) -> str:
        from helpers.kafka_helpers import create_topics

        name = f"{self._stem}-{label}-{uuid.uuid4().hex[:8]}"
        create_topics(self._bootstrap, [name])
        return name


@pytest.fixture
def topics(kafka, request) -> Topics:
    return Topics(kafka.bootstrap, request.node.name)


# -- the forwarder ----------------------------------------------------------------------------


def _wait_for_first_status(kafka, fwd) -> None:
    from helpers.kafka_helpers import TopicReader

    reader = TopicReader(kafka.bootstrap, fwd.spec.status_topic)
    try:
        reader.wait_for(
            lambda: not fwd.is_running() or any(r.schema_id == b"x5f2" for r in reader.records),
            timeout=FORWARDER_READY_TIMEOUT,
            what=f"the first x5f2 status of {fwd.name} on {fwd.spec.status_topic}",
        )
    finally:
        reader.close()
    if not fwd.is_running():
        raise RuntimeError(
            f"the forwarder exited during start-up; its log:\n{fwd.log_tail(LOG_TAIL_LINES)}"
        )


def _pause_for_debugger(config: pytest.Config, fwd) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")
    capture.suspend_global_capture(in_=True)
    try:
        input(
            f"\nforwarder {fwd.name} is running with PID {fwd.pid}; "
            "attach your debugger, then press Enter to go on "
        )
    finally:
        capture.resume_global_capture()


@pytest.fixture
def forwarder_factory(request, rig, kafka, epics_network, topics):
    """Start a forwarder: ``forwarder_factory(ini_file="forwarder.ini", storage_topic=None,
    sasl=None, password=None, extra_args=(), skip_retrieval=False, wait_ready=True,
    config_topic=None, status_topic=None, output_kafka=None)``.

    Returns once the forwarder has published its first status, so that a command sent after
    that is seen (``wait_ready=False`` returns right after launch). Config and status topics
    are new ones of the test unless given (e.g. made before the broker is stopped, or a
    config topic that must not exist yet). ``output_kafka``: another broker of the rig
    that gets the data, while commands and status stay on ``kafka``.
    """
    started = []

    def start(
        ini_file: str | None = "forwarder.ini",
        *,
        storage_topic: str | None = None,
        sasl: str | None = None,
        password: str | None = None,
        extra_args=(),
        skip_retrieval: bool = False,
        wait_ready: bool = True,
        config_topic: str | None = None,
        status_topic: str | None = None,
        output_kafka=None,
    ):
        if sasl and not kafka.sasl_bootstrap:
            pytest.skip("this broker has no SASL listener (an external --kafka-bootstrap)")
        args = list(extra_args) + (["--skip-retrieval"] if skip_retrieval else [])
        spec = ForwarderSpec(
            ini_file=ini_file,
            config_topic=config_topic or topics.new("config"),
            status_topic=status_topic or topics.new("status"),
            storage_topic=storage_topic,
            extra_args=tuple(args),
            sasl=sasl,
            password=password,
            output_broker=output_kafka.forwarder_bootstrap if output_kafka else None,
        )
        fwd = rig.forwarder(spec)
        _watch(request, fwd.name, fwd)
        started.append(fwd)
        fwd.start()
        if wait_ready:
            _wait_for_first_status(kafka, fwd)
        if request.config.getoption("--wait-to-attach-debugger"):
            _pause_for_debugger(request.config, fwd)
        return fwd

    yield start
    for fwd in started:
        if fwd.is_running():
            fwd.stop()


@pytest.fixture
def forwarder(forwarder_factory):
    """A forwarder with the default configuration (config-files/forwarder.ini)."""
    return forwarder_factory()

