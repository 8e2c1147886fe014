"""The failover scenario's bookkeeping: which steps the consumer keeps, and how a kill's
handover (moved PVs, longest silence, values lost or repeated) is read from them."""

from __future__ import annotations

from bench.consumer import Steps
from bench.failover import handover


def _feed(steps: Steps, name: bytes, values_at) -> None:
    for value, at in values_at:
        steps.add(name, value, at)


def test_steps_keep_silences_losses_and_repeats_from_the_window_start_only():
    steps = Steps()
    _feed(steps, b"A", [(1, 0.0), (5, 0.1), (6, 0.2)])  # a loss before the window: not kept
    steps.since = 0.25
    _feed(steps, b"A", [(7, 0.3), (8, 2.2), (8, 2.3), (11, 2.4), (12, 2.5)])
    _feed(steps, b"B", [(1, 2.0), (2, 2.1)])
    got = steps.dump()
    silence, repeat, loss = [0.3, 2.2, 7, 8], [2.2, 2.3, 8, 8], [2.3, 2.4, 8, 11]
    assert got["A"] == {"last": 2.5, "steps": [silence, repeat, loss]}
    assert got["B"] == {"last": 2.1, "steps": []}
    assert steps.oldest() == 2.1


def test_handover_counts_moved_pvs_their_longest_silence_and_what_they_lost():
    killed = 100.0
    pvs = {
        # stayed: two values skipped before the kill, nothing across it
        "stay": {"last": 120.0, "steps": [[90.0, 90.6, 10, 13]]},
        # moved: silent 7 s across the kill, 69 values skipped, then one sent twice
        "moved1": {"last": 120.0, "steps": [[99.95, 106.95, 200, 270], [107.0, 107.1, 271, 271]]},
        # moved: its last value before the kill landed just after it (in flight)
        "moved2": {"last": 120.0, "steps": [[100.02, 109.0, 300, 390]]},
        # never back since the kill
        "gone": {"last": 99.9, "steps": []},
    }
    got = handover(pvs, killed)
    assert got.moved == 2
    assert round(got.longest_s, 2) == 8.98 and got.longest_pv == "moved2"
    assert round(got.all_back_s, 2) == 9.0
    assert got.lost == 69 + 89
    assert got.lost_elsewhere == 2
    assert got.repeats == 1
    assert got.not_back == 1


def test_members_split_the_streams_exactly_when_none_is_listed_twice_or_missing():
    from helpers.forwarder_control import split_exactly

    expected = {"a", "b", "c"}
    assert split_exactly([{"a"}, {"b", "c"}], expected)
    assert not split_exactly([{"a", "b"}, {"b", "c"}], expected)  # b twice
    assert not split_exactly([{"a"}, {"b"}], expected)  # c missing
    assert not split_exactly([{"a", "b", "c"}, set()], expected)  # a member idle
    assert split_exactly([{"a", "b", "c"}, set()], expected, every_member_busy=False)
