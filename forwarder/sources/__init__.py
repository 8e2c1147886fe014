"""EPICS sources: Channel Access, PV Access and FAKE, behind one SourceFactory interface.

The CA and PVA client contexts are created lazily by their factories on the first
subscription, so a forwarder with only FAKE streams never starts a CA or PVA client.
"""

from __future__ import annotations

from forwarder.settings import PVA_QUEUE_SIZE
from forwarder.sources.base import SourceFactory
from forwarder.sources.ca import CaSourceFactory
from forwarder.sources.fake import FakeSourceFactory
from forwarder.sources.pva import PvaSourceFactory


def make_source_factories(
    fake_period_ms: int, metrics=None, pva_queue_size: int = PVA_QUEUE_SIZE
) -> dict[str, SourceFactory]:
    """One factory per protocol name as it appears in configuration messages.

    ``metrics`` (optional) counts PVA re-subscriptions of silent monitors.
    """
    return {
        "CA": CaSourceFactory(),
        "PVA": PvaSourceFactory(metrics, queue_size=pva_queue_size),
        "FAKE": FakeSourceFactory(fake_period_ms),
    }


__all__ = ["make_source_factories"]
