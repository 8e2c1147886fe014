"""Kafka addresses in the ESS URI form, turned into confluent-kafka settings.

``[PROTOCOL+MECHANISM\\user@]host:port[,host:port...][/topic]``: the prefix selects SASL,
no prefix means PLAINTEXT. Parsing happens once at start-up so that a bad address stops the
forwarder with one clear message instead of a silent retry loop inside librdkafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SASL_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})

_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class UriError(ValueError):
    """The address cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class KafkaUri:
    """One parsed address. ``protocol`` is PLAINTEXT, SASL_PLAINTEXT or SASL_SSL."""

    brokers: tuple[str, ...]
    topic: str | None = None
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.brokers)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS


def parse_uri(text: str) -> KafkaUri:
    """Parse an ESS Kafka URI; raise UriError naming the bad part."""
    original = text
    text = text.strip()
    if not text:
        raise UriError("empty Kafka address")
    protocol, mechanism, username = "PLAINTEXT", None, None
    if "@" in text:
        credentials, text = text.rsplit("@", 1)
        protocol, mechanism, username = _parse_credentials(credentials, original)
    topic = None
    if "/" in text:
        text, topic = text.split("/", 1)
        if not _TOPIC.match(topic):
            raise UriError(f"invalid topic name {topic!r} in Kafka address {original!r}")
    brokers = tuple(b.strip() for b in text.split(","))
    for broker in brokers:
        match = _BROKER.match(broker)
        if not match:
            raise UriError(
                f"invalid broker {broker!r} in Kafka address {original!r} (expected host:port)"
            )
        if not 0 < int(match.group(2)) < 65536:
            raise UriError(f"port out of range in broker {broker!r} of {original!r}")
    return KafkaUri(brokers, topic, protocol, mechanism, username)


def _parse_credentials(credentials: str, original: str) -> tuple[str, str, str]:
    if "\\" not in credentials or "+" not in credentials.split("\\", 1)[0]:
        raise UriError(
            f"invalid Kafka address {original!r}: expected PROTOCOL+MECHANISM\\user@ before "
            "the broker"
        )
    prefix, username = credentials.split("\\", 1)
    protocol, mechanism = prefix.split("+", 1)
    protocol, mechanism = protocol.upper(), mechanism.upper()
    if protocol not in SASL_PROTOCOLS:
        raise UriError(
            f"unsupported security protocol {protocol!r} in {original!r} "
            f"(use one of {', '.join(sorted(SASL_PROTOCOLS))})"
        )
    if mechanism not in SASL_MECHANISMS:
        raise UriError(
            f"unsupported SASL mechanism {mechanism!r} in {original!r} "
            f"(use one of {', '.join(sorted(SASL_MECHANISMS))})"
        )
    if not username:
        raise UriError(f"missing user name in Kafka address {original!r}")
    return protocol, mechanism, username


def kafka_config(uri: KafkaUri, password: str | None, ssl_ca_file: str | None) -> dict[str, str]:
    """confluent-kafka settings for connecting to ``uri``; raise UriError if SASL lacks a password."""
    config = {"bootstrap.servers": uri.bootstrap_servers}
    if not uri.uses_sasl:
        return config
    if not password:
        raise UriError(
            f"Kafka address for user {uri.username!r} uses {uri.protocol}+{uri.mechanism} "
            "but no password was given"
        )
    config.update(
        {
            "security.protocol": uri.protocol,
            "sasl.mechanism": uri.mechanism,
            "sasl.username": uri.username,
            "sasl.password": password,
        }
    )
    if uri.protocol == "SASL_SSL" and ssl_ca_file:
        config["ssl.ca.location"] = ssl_ca_file
    return config
