"""The forwarder's settings: the parsed options, checked and turned into what each part needs.

Everything that can be wrong with the settings (a malformed Kafka address, a missing topic or
password) is found here, before anything connects; the command line (forwarder.cli) reports
a ``SettingsError`` as one line on stderr with exit code 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from forwarder.kafka.buffer_budget import DEFAULT_BUFFER_MB
from forwarder.kafka.uri import KafkaUri, UriError, kafka_config, parse_uri
from forwarder.logging_setup import verbosity_level

_GROUP_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
_BARE_HOST = re.compile(r"^([A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\])$")
# The carbon plaintext port, graphyte's default: an ESS ini names the carbon host only.
CARBON_DEFAULT_PORT = 2003
# PVXS squashes a PVA monitor's updates into one, telling p4p nothing, once this many wait
# unread: in our client while its workers are behind, or in the server while the socket is
# backed up. PVXS's default, 4, is 0.4 s of a 10 Hz PV; 64 rides out a stall of seconds.
PVA_QUEUE_SIZE = 64


class SettingsError(ValueError):
    """The settings cannot work; the message is shown to the user as is."""


def carbon_address(text: str) -> str:
    """``host:port`` of a carbon server given as ``host:port`` or, as ESS inis do, a bare host
    (then the port is graphyte's default, 2003)."""
    if _HOST_PORT.match(text):
        return text
    if _BARE_HOST.match(text):
        return f"{text}:{CARBON_DEFAULT_PORT}"
    raise SettingsError(f"--grafana-carbon-address: expected host or host:port, got {text!r}")


@dataclass(frozen=True)
class Settings:
    """Validated settings: ready-made confluent-kafka configs and topics for each role."""

    config_kafka: dict[str, str] = field(repr=False)  # holds the password
    config_topic: str
    status_kafka: dict[str, str] = field(repr=False)  # holds the password
    status_topic: str
    output_kafka: dict[str, str] = field(repr=False)  # holds the password
    storage_kafka: dict[str, str] | None = field(repr=False)
    storage_topic: str | None
    skip_retrieval: bool
    pv_update_period_ms: int | None
    fake_pv_period_ms: int
    service_id: str
    log_file: str | None
    log_level: int
    grafana_carbon_address: str | None
    grafana_metric_prefix: str | None
    statistics_update_interval_s: float
    prometheus_port: int | None
    group: str | None = None  # forwarder group name (--group); None: forward everything
    workers: int = 1  # member processes started under one supervisor (--workers)
    producer_buffer_mb: int = DEFAULT_BUFFER_MB
    pva_queue_size: int = PVA_QUEUE_SIZE


def _uri(role: str, text: str, need_topic: bool) -> KafkaUri:
    try:
        uri = parse_uri(text)
    except UriError as error:
        raise SettingsError(f"--{role}: {error}") from None
    if need_topic and not uri.topic:
        raise SettingsError(f"--{role}: no topic in {text!r} (expected host:port/topic)")
    return uri


def _config(role: str, uri: KafkaUri, password: str | None, ca_file: str | None) -> dict:
    try:
        return kafka_config(uri, password, ca_file)
    except UriError as error:
        raise SettingsError(f"--{role}: {error} (set --{role}-sasl-password)") from None


def _positive(option: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise SettingsError(f"--{option} must be positive, got {value}")


def validated_settings(args) -> Settings:
    """The Settings for parsed options (an argparse namespace); raise SettingsError."""
    ca = args.ssl_ca_cert_file
    config_uri = _uri("config-topic", args.config_topic, need_topic=True)
    status_uri = _uri("status-topic", args.status_topic, need_topic=True)
    output_uri = _uri("output-broker", args.output_broker, need_topic=False)
    storage_uri = (
        _uri("storage-topic", args.storage_topic, need_topic=True) if args.storage_topic else None
    )
    try:
        level = verbosity_level(args.verbosity)
    except ValueError as error:
        raise SettingsError(f"--verbosity: {error}") from None
    _positive("pv-update-period", args.pv_update_period)
    _positive("fake-pv-period", args.fake_pv_period)
    _positive("statistics-update-interval", args.statistics_update_interval)
    _positive("producer-buffer-mb", args.producer_buffer_mb)
    if args.pva_queue_size < 2:
        raise SettingsError(f"--pva-queue-size must be at least 2, got {args.pva_queue_size}")
    if args.prometheus_port is not None and not 0 < args.prometheus_port < 65536:
        raise SettingsError(f"--prometheus-port out of range: {args.prometheus_port}")
    carbon = carbon_address(args.grafana_carbon_address) if args.grafana_carbon_address else None
    _check_group(args, config_uri.topic)
    return Settings(
        config_kafka=_config("config-topic", config_uri, args.config_topic_sasl_password, ca),
        config_topic=config_uri.topic,
        status_kafka=_config("status-topic", status_uri, args.status_topic_sasl_password, ca),
        status_topic=status_uri.topic,
        output_kafka=_config("output-broker", output_uri, args.output_broker_sasl_password, ca),
        storage_kafka=(
            _config("storage-topic", storage_uri, args.storage_topic_sasl_password, ca)
            if storage_uri
            else None
        ),
        storage_topic=storage_uri.topic if storage_uri else None,
        skip_retrieval=bool(args.skip_retrieval),
        pv_update_period_ms=args.pv_update_period,
        fake_pv_period_ms=args.fake_pv_period,
        service_id=args.service_id or str(os.getpid()),
        log_file=args.log_file,
        log_level=level,
        grafana_carbon_address=carbon,
        grafana_metric_prefix=args.grafana_metric_prefix,
        statistics_update_interval_s=args.statistics_update_interval,
        prometheus_port=args.prometheus_port,
        group=args.group,
        workers=args.workers,
        producer_buffer_mb=args.producer_buffer_mb,
        pva_queue_size=args.pva_queue_size,
    )


def _check_group(args, config_topic: str) -> None:
    """A group member must know the whole configuration before it takes streams, so it
    restores from storage; and the group's coordination topic must be a legal name."""
    if args.workers is not None and args.workers < 1:
        raise SettingsError(f"--workers must be at least 1, got {args.workers}")
    if args.group is None:
        if args.workers != 1:
            raise SettingsError("--workers needs --group (the workers share the streams)")
        return
    from forwarder.group.names import coordination_topic

    if not _GROUP_NAME.fullmatch(args.group):
        raise SettingsError(
            f"--group: {args.group!r} is not a valid group name (letters, digits, . _ -)"
        )
    topic = coordination_topic(config_topic, args.group)
    if len(topic) > 249:
        raise SettingsError(
            f"--group: the coordination topic {topic!r} would be longer than Kafka's 249 "
            "characters; use a shorter group name"
        )
    if not args.storage_topic:
        raise SettingsError(
            "--group needs --storage-topic: a member that joins must restore the whole "
            "configuration before it takes over streams"
        )
    if args.skip_retrieval:
        raise SettingsError(
            "--group cannot be used with --skip-retrieval: a member that joins must restore "
            "the whole configuration before it takes over streams"
        )
