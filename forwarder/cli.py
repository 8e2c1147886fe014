"""The command line: ESS option names, from arguments, an ini file or environment variables.

Options are parsed here and checked by forwarder.settings before anything connects; a problem
is reported as one line on stderr with exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

import configargparse

import forwarder
from forwarder.kafka.buffer_budget import DEFAULT_BUFFER_MB
from forwarder.settings import (
    CARBON_DEFAULT_PORT,
    PVA_QUEUE_SIZE,
    Settings,
    SettingsError,
    validated_settings,
)

EXIT_USAGE = 2


def _env_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_").upper()


def build_parser() -> configargparse.ArgParser:
    parser = configargparse.ArgParser(
        prog="forwarder",
        description="Forwards EPICS PV updates into Kafka (a drop-in for the ESS forwarder).",
        config_file_parser_class=configargparse.DefaultConfigFileParser,
    )

    def add(option: str, *args: str, **kwargs) -> None:
        parser.add_argument(option, *args, env_var=_env_name(option), **kwargs)

    parser.add_argument(
        "-c", "--config-file", is_config_file=True, help="ini file with key=value option lines"
    )
    parser.add_argument("--version", action="version", version=forwarder.__version__)
    add("--config-topic", required=True, help="Kafka URI of the topic carrying fc00 commands")
    add("--status-topic", required=True, help="Kafka URI of the topic for x5f2 status")
    add("--output-broker", required=True, help="Kafka URI of the broker for data")
    add("--storage-topic", help="Kafka URI of the topic storing the current configuration")
    add(
        "--skip-retrieval",
        action="store_true",
        help="do not restore the configuration from the storage topic at start-up",
    )
    add("--pv-update-period", type=int, help="re-send the last value every N ms (periodic streams)")
    add("--fake-pv-period", type=int, default=1000, help="update period of FAKE PVs in ms")
    add("--service-id", help="identifies this forwarder in status messages (default: its PID)")
    add("--log-file", help="append log lines to this file instead of stderr")
    add(
        "-v",
        "--verbosity",
        default="Info",
        help="Trace, Debug, Info, Warning, Error or Critical",
    )
    for role in ("output-broker", "config-topic", "status-topic", "storage-topic"):
        add(f"--{role}-sasl-password", help=f"SASL password for --{role}")
    add("--ssl-ca-cert-file", help="CA certificate file for SASL_SSL connections")
    add(
        "--grafana-carbon-address",
        help=f"host[:port] of a Graphite/carbon server for metrics (port {CARBON_DEFAULT_PORT} "
        "when left out)",
    )
    add("--grafana-metric-prefix", help="prefix of the metric names sent to Graphite")
    add(
        "--statistics-update-interval",
        type=float,
        default=10.0,
        help="seconds between metric reports to Graphite",
    )
    add("--prometheus-port", type=int, help="serve Prometheus metrics on this port")
    add(
        "--group",
        help="join the forwarder group NAME: forwarders with the same config topic and group "
        "share the configured streams, and take over those of a member that dies "
        "(needs --storage-topic)",
    )
    add(
        "--workers",
        type=int,
        default=1,
        help="start N group members as child processes and restart any that dies "
        "(needs --group)",
    )
    add(
        "--producer-buffer-mb",
        type=int,
        default=DEFAULT_BUFFER_MB,
        help="memory (MB) for data waiting for Kafka; beyond it the oldest updates are dropped"
        " (counted, logged), keeping each stream's newest",
    )
    add(
        "--pva-queue-size",
        type=int,
        default=PVA_QUEUE_SIZE,
        help="updates of one PVA monitor that may wait unread, in this client and in the server, "
        "before PVXS squashes them into one (not counted: PVXS does not report it)",
    )
    return parser


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Parse and validate; raise SettingsError, or SystemExit for --help/--version/usage."""
    parser = build_parser()
    args = parser.parse_args(args=argv, env_vars=os.environ if env is None else env)
    return validated_settings(args)



def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``forwarder`` command; returns the process exit code."""
    try:
        settings = parse_settings(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    except SettingsError as error:
        print(f"forwarder: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from forwarder.logging_setup import setup_logging

    try:
        setup_logging(settings.log_level, settings.log_file)
    except OSError as error:
        print(f"forwarder: error: cannot open --log-file: {error}", file=sys.stderr)
        return EXIT_USAGE
    if settings.workers > 1:
        from forwarder.supervisor import run_workers

        return run_workers(
            list(sys.argv[1:] if argv is None else argv), settings.workers, settings.service_id
        )
    from forwarder.lifecycle import run

    return run(settings)
