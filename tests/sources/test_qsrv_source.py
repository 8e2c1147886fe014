"""PVA sources against a real IOC's QSRV: what an IOC really sends (alarm messages, types)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from forwarder.sources.pva import PvaSourceFactory
from forwarder.update import Alarm, ConnectionStatus, Severity
from helpers.polling import wait_until
from helpers.rig.processes import ManagedProcess
from tests.sources.sources_recorder import Recorder

RUN_IOC = Path(__file__).with_name("run_test_ioc.py")
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def qsrv(epics_network):
    prefix = f"QS{uuid.uuid4().hex[:8]}:"
    ioc = ManagedProcess(
        "qsrv-source-test-ioc",
        [sys.executable, str(RUN_IOC), "--pva", prefix],
        env={**os.environ, **epics_network.server_env()},
    ).start()
    factory = PvaSourceFactory()
    try:
        yield factory, prefix
    finally:
        factory.close()
        ioc.stop()


def test_qsrv_alarm_message_and_record_types(qsrv):
    factory, prefix = qsrv
    names = ["AI", "INT64", "ENUM", "CHARWF", "STRWF", "SHORT1", "EMPTY"]
    subs = {}
    for n in names:
        rec = Recorder()
        subs[n] = (factory.create(prefix + n, rec.on_update, rec.on_connection), rec)
        subs[n][0].start()
    try:
        got = {
            n: wait_until(rec.last_update, timeout=TIMEOUT, what=f"{n} over PVA", seen=rec.snapshot)
            for n, (_, rec) in subs.items()
        }
        assert subs["AI"][1].snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
    finally:
        for source, _ in subs.values():
            source.stop()
    assert got["AI"].alarm == Alarm(Severity.MINOR, "HIGH", "HIGH")
    assert type(got["AI"].value) is np.float64 and got["AI"].value == 15.0
    assert type(got["INT64"].value) is np.int64 and got["INT64"].value == 123  # no CA double
    assert type(got["ENUM"].value) is np.int32 and got["ENUM"].value == 1
    assert got["CHARWF"].value.dtype == np.int8 and got["CHARWF"].value.tolist() == [104, 105]
    assert got["STRWF"].value == ("a", "b", "c")
    assert type(got["SHORT1"].value) is np.int16
    assert isinstance(got["EMPTY"].value, np.ndarray) and got["EMPTY"].value.size == 0
