import json

from streaming_data_types.status_x5f2 import deserialise_x5f2

import forwarder
from forwarder.config.streams import StreamSpec
from forwarder.status.reporter import StatusReporter, status_json, status_json_parts

from .fakes_control import FakeSink

SPECS = [
    StreamSpec("SIM:B", "f142", "t2", "PVA", True),
    StreamSpec("SIM:A", "f144", "t1", "CA"),
]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def reporter(sink, clock, specs=SPECS):
    return StatusReporter(
        sink, "status", "fwd-7", lambda: list(specs), clock=clock, host_name="h", process_id=42
    )


def test_status_json_lists_every_stream():
    assert json.loads(status_json(SPECS)) == {
        "streams": [
            {"channel_name": "SIM:A", "protocol": "CA", "output_topic": "t1", "schema": "f144"},
            {"channel_name": "SIM:B", "protocol": "PVA", "output_topic": "t2", "schema": "f142"},
        ]
    }
    assert json.loads(status_json([])) == {"streams": []}


def test_status_json_adds_each_streams_state_after_the_ess_keys():
    def state(spec):
        return {"connection": "CONNECTED", "forwarded": len(spec.channel), "dropped": 0}

    streams = json.loads(status_json(SPECS, state))["streams"]
    assert [list(s)[:4] for s in streams] == [
        ["channel_name", "protocol", "output_topic", "schema"]
    ] * 2
    assert streams[0] == {
        "channel_name": "SIM:A",
        "protocol": "CA",
        "output_topic": "t1",
        "schema": "f144",
        "connection": "CONNECTED",
        "forwarded": 5,
        "dropped": 0,
    }


def test_message_fields():
    sink = FakeSink()
    reporter(sink, Clock()).send()
    ((topic, key, value, _ts),) = sink.messages
    assert topic == "status" and key is None
    status = deserialise_x5f2(value)
    assert status.software_name == "forwarder"
    assert status.software_version == forwarder.__version__
    assert (status.service_id, status.host_name, status.process_id) == ("fwd-7", "h", 42)
    assert status.update_interval == 4000
    assert json.loads(status.status_json) == json.loads(status_json(SPECS))


def test_tick_sends_first_at_once_then_every_interval():
    sink, clock = FakeSink(), Clock()
    r = reporter(sink, clock)
    assert r.tick()
    clock.now += 3.9
    assert not r.tick()
    clock.now += 0.1
    assert r.tick()
    assert len(sink.messages) == 2


def test_change_sends_at_once_with_the_new_config_and_restarts_the_period():
    sink, clock = FakeSink(), Clock()
    r = reporter(sink, clock)
    r.tick()
    clock.now += 2
    r([SPECS[0]])
    streams = json.loads(deserialise_x5f2(sink.values()[-1]).status_json)["streams"]
    assert [s["channel_name"] for s in streams] == ["SIM:B"]
    clock.now += 3
    assert not r.tick()


def _entries(n):
    return [
        {"channel_name": f"PV:{i:058d}", "protocol": "CA", "output_topic": "t", "schema": "f144"}
        for i in range(n)
    ]


def test_a_status_that_fits_is_one_message_without_parts():
    (text,) = status_json_parts(_entries(3), cycle=1)
    assert json.loads(text) == {"streams": _entries(3)}


def test_a_large_status_is_split_into_parts_whose_union_is_every_stream():
    parts = [json.loads(p) for p in status_json_parts(_entries(3000), cycle=7, max_bytes=50_000)]
    assert len(parts) > 1
    assert [p["part"] for p in parts] == [
        {"index": i, "count": len(parts), "cycle": 7} for i in range(1, len(parts) + 1)
    ]
    assert [e for p in parts for e in p["streams"]] == _entries(3000)
    assert all(len(t) <= 50_000 for t in status_json_parts(_entries(3000), 7, 50_000))


def test_reporter_sends_every_part_of_a_large_status():
    sink = FakeSink()
    specs = [StreamSpec(f"PV:{i:058d}", "f144", "t", "CA", False) for i in range(20_000)]
    reporter = StatusReporter(sink, "status", "svc", lambda: specs)
    reporter.send()
    statuses = [json.loads(deserialise_x5f2(v).status_json) for v in sink.values("status")]
    assert len(statuses) > 1
    assert sum(len(s["streams"]) for s in statuses) == 20_000
    assert all(len(v) < 1_000_000 for v in sink.values("status"))


def test_extra_top_level_state_is_in_every_part_and_in_a_whole_status():
    extra = {"storage": {"topic": "store", "written": 3, "failed": 1, "error": "too large"}}
    (whole,) = status_json_parts(_entries(2), cycle=1, extra=extra)
    assert json.loads(whole) == {"streams": _entries(2), **extra}
    parts = status_json_parts(_entries(3000), cycle=2, max_bytes=50_000, extra=extra)
    assert len(parts) > 1
    assert all(json.loads(p)["storage"] == extra["storage"] for p in parts)
    assert all(len(p) <= 50_000 for p in parts)
