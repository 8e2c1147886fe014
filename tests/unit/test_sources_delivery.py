"""Delivery: callbacks stop at close, and callback errors are logged, not raised."""

from __future__ import annotations

import logging

from forwarder.sources.delivery import Delivery
from forwarder.update import ConnectionStatus, Update


def test_source_delivery_swallows_and_logs_callback_errors(caplog):
    def boom(*_):
        raise RuntimeError("pipeline bug")

    d = Delivery("PV", boom, boom)
    with caplog.at_level(logging.ERROR):
        d.deliver_update(Update("PV", 1, 0))
        d.deliver_connection(ConnectionStatus.CONNECTED)
    assert sum("failed for PV" in r.getMessage() for r in caplog.records) == 2


def test_source_delivery_nothing_after_close():
    got = []
    d = Delivery("PV", got.append, lambda s, t: got.append((s, t)))
    d.deliver_connection(ConnectionStatus.CONNECTED, 5)
    d.close()
    d.deliver_update(Update("PV", 1, 0))
    d.deliver_connection(ConnectionStatus.DISCONNECTED)
    assert got == [(ConnectionStatus.CONNECTED, 5)]


def test_source_delivery_logs_a_conversion_error_once(caplog):
    d = Delivery("PV", lambda u: None, lambda s, t: None)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            d.conversion_failed(ValueError("odd type"))
    assert [r.getMessage() for r in caplog.records] == [
        "dropping update of PV: cannot convert it (odd type)"
    ]
