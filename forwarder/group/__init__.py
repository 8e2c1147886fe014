"""Forwarder groups: several processes share the configured streams (``--group``)."""
