"""The command line a forwarder is started with, from a ForwarderSpec.

Shared by the local and the docker backend: the ini file carries the fixed settings of a
fixture, and the addresses and topics, which are only known at run time, are passed as ESS
options.
"""

from __future__ import annotations

from helpers.rig.api import SASL_USERS, ForwarderSpec


def kafka_uri(host_port: str, topic: str | None, sasl: str | None) -> str:
    """An ESS Kafka URI: ``[SASL_PLAINTEXT+MECHANISM\\user@]host:port[/topic]``."""
    prefix = ""
    if sasl:
        user, _ = SASL_USERS[sasl]
        prefix = f"SASL_PLAINTEXT+{sasl}\\{user}@"
    return f"{prefix}{host_port}" + (f"/{topic}" if topic else "")


def forwarder_args(
    spec: ForwarderSpec,
    *,
    plain_bootstrap: str,
    sasl_bootstrap: str | None,
    config_dir: str,
    log_file: str,
    service_id: str,
) -> list[str]:
    """ESS command-line options for ``spec``; paths are as the forwarder process sees them."""
    host_port = plain_bootstrap
    if spec.sasl:
        if not sasl_bootstrap:
            raise RuntimeError("this broker has no SASL listener")
        host_port = sasl_bootstrap
    args: list[str] = []
    if spec.ini_file:
        args += ["-c", f"{config_dir}/{spec.ini_file}"]
    args += [
        "--output-broker",
        kafka_uri(spec.output_broker or host_port, None, spec.sasl),
        "--config-topic",
        kafka_uri(host_port, spec.config_topic, spec.sasl),
        "--status-topic",
        kafka_uri(host_port, spec.status_topic, spec.sasl),
        "--log-file",
        log_file,
        "--service-id",
        service_id,
    ]
    if spec.storage_topic:
        args += ["--storage-topic", kafka_uri(host_port, spec.storage_topic, spec.sasl)]
    if spec.sasl:
        password = spec.password if spec.password is not None else SASL_USERS[spec.sasl][1]
        for option in ("output-broker", "config-topic", "status-topic"):
            args += [f"--{option}-sasl-password", password]
        if spec.storage_topic:
            args += ["--storage-topic-sasl-password", password]
    args += list(spec.extra_args)
    return args
