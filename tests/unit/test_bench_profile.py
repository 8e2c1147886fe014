"""bench --profile: each py-spy sample goes to the pipeline stage it was in."""

from __future__ import annotations

from bench.profile import NATIVE, OTHER, split, stage_of


def test_a_sample_belongs_to_its_innermost_stage_with_the_c_work_it_calls():
    serialising = [
        "_bootstrap (threading.py:1002)",
        "_on_event (forwarder/sources/ca_events.py:120)",
        "on_update (forwarder/stream.py:143)",
        "serialise (forwarder/serialise/f144.py:40)",
        "malloc (libc.so.6)",
    ]
    assert stage_of(serialising) == "serialisers"
    assert stage_of(serialising[:3]) == "stream logic"
    assert stage_of(["kafka-poll", "_on_delivery (forwarder/kafka/producer.py:312)"]) == (
        "producer (ours)"
    )
    assert stage_of(["MainThread", "emit (logging/__init__.py:1100)"]) == OTHER
    assert stage_of(["thread (21889)"]) == NATIVE


def test_a_sample_blocked_in_a_c_call_is_a_wait_not_work():
    assert stage_of(["kafka-poll", "_poll_loop (forwarder/kafka/producer.py:526)"]) is None
    assert stage_of(["MainThread", "poll (forwarder/kafka/consumer.py:153)"]) is None
    assert stage_of(["_bootstrap (threading.py:1002)", "wait (threading.py:320)"]) is None


def test_the_split_is_percent_of_samples_largest_first():
    lines = [
        "a (forwarder/stream.py:1);b (forwarder/serialise/f144.py:2) 30\n",
        "a (forwarder/stream.py:1) 60\n",
        "x (threading.py:1) 10\n",
        "kafka-poll;_poll_loop (forwarder/kafka/producer.py:526) 500\n",
        "not a sample line\n",
    ]
    assert split(lines) == {"stream logic": 60.0, "serialisers": 30.0, OTHER: 10.0}
    assert split([]) == {}


def test_library_frames_count_as_their_library():
    assert stage_of(["pva-worker", "pop (p4p/client/raw.py:101)"]).startswith("p4p")
    assert stage_of(["t", "__call__ (epics/ca.py:120)"]) == "pyepics"
