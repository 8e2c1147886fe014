"""Names every member of a forwarder group derives alike from the config topic and group."""

from __future__ import annotations


def coordination_topic(config_topic: str, group: str) -> str:
    """The group's coordination topic, whose partitions are the units of ownership."""
    return f"{config_topic}.{group}.coordination"


def group_id(config_topic: str, group: str) -> str:
    """The Kafka consumer group the members join."""
    return f"forwarder-group.{group}.{config_topic}"
