"""EPICS to Kafka forwarder, a drop-in for the ESS forwarder."""

__version__ = "0.1.0"
