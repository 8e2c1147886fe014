"""The benchmark's bookkeeping: values never delivered must show as lost or backlog, and
drop counts are read from the status only where a build reports them."""

from __future__ import annotations

import json

from bench.delivery import ReceivedValues, account
from bench.status_drops import drops_between, reported_drops
from helpers.flatbuffers_helpers import X5f2


def test_received_values_keep_runs_and_spot_repeats():
    got = ReceivedValues()
    for v in (1, 2, 3, 7, 8, 5, 6, 4):
        assert got.add(v)
    assert got.runs == [[1, 8]]
    assert not got.add(5)
    got.add(10)
    assert got.runs == [[1, 8], [10, 10]]
    assert got.count_in(3, 10) == 7


def test_values_not_received_by_the_end_are_backlog_not_zero_loss():
    start, end = {"A": 10.0, "B": 10.0, "C": 10.0}, {"A": 20.0, "B": 20.0, "C": 20.0}
    received = {
        "A": [[5, 25]],  # everything
        "B": [[5, 12], [14, 16]],  # 13 skipped, 17..20 still queued
        # C never delivered anything
    }
    got = account(start, end, received, ["A", "B", "C"])
    assert got.made == 30
    assert got.delivered == 10 + 5
    assert got.lost == 1
    assert got.backlog == 4 + 10
    assert got.pvs_read == 3


def _status(streams) -> X5f2:
    text = json.dumps({"streams": streams})
    return X5f2("f", "1", "id", "h", 1, 4000, text, json.loads(text))


def test_drop_counts_read_under_either_name_and_absent_means_unknown():
    before = _status([{"channel_name": "A", "dropped": 2}, {"channel_name": "B"}])
    after = _status([{"channel_name": "A", "dropped": 5},
                     {"channel_name": "B", "updates_dropped": 4}])
    assert reported_drops(after) == 9
    assert drops_between(before, after) == 7
    assert reported_drops(_status([{"channel_name": "A"}])) is None
    assert drops_between(None, _status([{"channel_name": "A"}])) is None
