import logging

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00

from forwarder.config.commands import Command, CommandKind, ConfigController, parse_command
from forwarder.config.streams import StreamPattern, StreamSpec

from .fakes_control import FakeStreams


def fc00(kind, *streams):
    return serialise_fc00(kind, [StreamInfo(*s) for s in streams])


A = ("SIM:A", "f144", "data", Protocol.CA, 0)
B = ("SIM:B", "f142", "data", Protocol.PVA, 1)
SPEC_A = StreamSpec("SIM:A", "f144", "data", "CA", False)
SPEC_B = StreamSpec("SIM:B", "f142", "data", "PVA", True)


def test_add_decodes_streams():
    command = parse_command(fc00(UpdateType.ADD, A, B))
    assert command.kind is CommandKind.ADD and command.patterns == ()
    assert sorted(command.specs, key=lambda s: s.channel) == [SPEC_A, SPEC_B]


def test_fake_protocol_and_table_schema():
    command = parse_command(fc00(UpdateType.ADD, ("T", "nttable_se00", "t", Protocol.FAKE, 0)))
    assert command.specs == (StreamSpec("T", "nttable_se00", "t", "FAKE"),)


def test_removeall_and_replace():
    assert parse_command(fc00(UpdateType.REMOVEALL)) == Command(CommandKind.REMOVE_ALL)
    assert parse_command(fc00(UpdateType.REPLACE, A)) == Command(
        CommandKind.REPLACE, specs=(SPEC_A,)
    )



def test_remove_gives_patterns_of_the_given_fields():
    command = parse_command(fc00(UpdateType.REMOVE, ("SIM:*", "", "", Protocol.CA, 0)))
    assert command == Command(CommandKind.REMOVE, patterns=(StreamPattern("SIM:*"),))


def test_remove_with_all_fields_empty_is_ignored(caplog):
    assert parse_command(fc00(UpdateType.REMOVE, ("", "", "", Protocol.CA, 0))) is None
    assert "all empty" in caplog.text


@pytest.mark.parametrize(
    "stream, reason",
    [
        (("", "f144", "data", Protocol.CA, 0), "empty channel"),
        (("X", "f144", "", Protocol.CA, 0), "empty topic"),
        (("X", "nope", "data", Protocol.CA, 0), "schema 'nope' is not valid for CA"),
        (("X", "nttable_se00", "data", Protocol.CA, 0), "not valid for CA"),
        (("X", "f144", "data", 7, 0), "unknown protocol 7"),
    ],
)
def test_invalid_streams_are_skipped_by_name_and_valid_ones_kept(stream, reason, caplog):
    with caplog.at_level(logging.WARNING):
        command = parse_command(fc00(UpdateType.ADD, A, stream))
    assert command.specs == (SPEC_A,)
    assert reason in caplog.text
    assert f"channel={stream[0]!r}" in caplog.text


def test_add_with_only_invalid_streams_is_ignored(caplog):
    assert parse_command(fc00(UpdateType.ADD, ("", "f144", "d", Protocol.CA, 0))) is None
    assert "no valid streams" in caplog.text


def test_replace_with_only_invalid_streams_is_ignored(caplog):
    typo = ("SIM:A", "f14", "data", Protocol.CA, 0)
    with caplog.at_level(logging.WARNING):
        assert parse_command(fc00(UpdateType.REPLACE, typo)) is None
    assert "Ignoring REPLACE" in caplog.text and "no valid streams" in caplog.text
    assert "schema 'f14'" in caplog.text


def test_empty_replace_is_ignored_because_removeall_is_the_way_to_clear(caplog):
    with caplog.at_level(logging.WARNING):
        assert parse_command(fc00(UpdateType.REPLACE)) is None
    assert "Ignoring REPLACE" in caplog.text


ILLEGAL_TOPICS = ["bad topic!", ".", "..", "a/b", "x" * 250, "tab\there", "ümlaut", "new\n"]
LEGAL_TOPICS = ["a", "A.b_c-9", "..a", "x" * 249]


@pytest.mark.parametrize("topic", ILLEGAL_TOPICS)
def test_illegal_topic_is_skipped_by_name_and_valid_streams_kept(topic, caplog):
    with caplog.at_level(logging.WARNING):
        command = parse_command(fc00(UpdateType.ADD, A, ("SIM:C", "f144", topic, Protocol.CA, 0)))
    assert command.specs == (SPEC_A,)
    assert f"topic={topic!r}" in caplog.text and "not a legal Kafka topic name" in caplog.text


@pytest.mark.parametrize("topic", LEGAL_TOPICS)
def test_legal_topic_names_are_accepted(topic):
    command = parse_command(fc00(UpdateType.ADD, ("SIM:C", "f144", topic, Protocol.CA, 0)))
    assert command.specs == (StreamSpec("SIM:C", "f144", topic, "CA"),)


def test_replace_with_only_illegal_topics_is_ignored():
    stream = ("SIM:C", "f144", "a/b", Protocol.CA, 0)
    assert parse_command(fc00(UpdateType.REPLACE, stream)) is None


@pytest.mark.parametrize(
    "payload, reason",
    [
        (None, "too short"),
        (b"", "too short"),
        (b"\x00\x01", "too short"),
        (b"\x00" * 4 + b"f144" + b"\x00" * 40, "schema id b'f144'"),
        (b"\xff" * 64, "schema id"),
        (fc00(UpdateType.ADD, A)[:20], "malformed"),
        (b"\xff\xff\xff\x7f" + b"fc00" + b"\xff" * 32, "malformed"),
    ],
)
def test_junk_is_logged_and_ignored(payload, reason, caplog):
    with caplog.at_level(logging.WARNING):
        assert parse_command(payload) is None
    assert reason in caplog.text


def test_unknown_update_type_is_ignored(caplog):
    assert parse_command(fc00(9, A)) is None
    assert "unknown fc00 update type 9" in caplog.text


@pytest.mark.parametrize(
    "payload",
    [
        fc00(UpdateType.ADD, A, B),
        fc00(UpdateType.REPLACE, A),
        fc00(UpdateType.REMOVE, ("SIM:*", "", "", 0, 0)),
        fc00(UpdateType.REMOVEALL),
    ],
)
def test_truncation_is_rejected_never_half_applied(payload):
    """Every cut is either rejected, or only lost trailing padding and decodes in full."""
    full = parse_command(payload)
    assert full is not None
    rejected = 0
    for cut in range(len(payload)):
        result = parse_command(payload[:cut])
        assert result is None or result == full, f"cut at {cut} of {len(payload)}: {result}"
        rejected += result is None
    assert rejected >= len(payload) - 3  # at most the padding after the last string


def test_flipped_bytes_never_raise():
    payload = fc00(UpdateType.ADD, A, B)
    for i in range(8, len(payload)):
        corrupted = bytearray(payload)
        corrupted[i] ^= 0xFF
        result = parse_command(bytes(corrupted))
        assert result is None or isinstance(result, Command)


def test_duplicate_streams_in_one_add_collapse():
    assert parse_command(fc00(UpdateType.ADD, A, A)).specs == (SPEC_A,)


class TestController:
    def test_add_then_remove_with_wildcard(self):
        streams = FakeStreams()
        seen = []
        controller = ConfigController(streams, [seen.append])
        assert controller.handle_message(fc00(UpdateType.ADD, A, B))
        assert set(controller.specs()) == {SPEC_A, SPEC_B}
        assert controller.handle_message(fc00(UpdateType.REMOVE, ("*:A", "", "", 0, 0)))
        assert controller.specs() == [SPEC_B]
        assert [set(s) for s in seen] == [{SPEC_A, SPEC_B}, {SPEC_B}]

    def test_remove_matches_on_topic_and_schema(self):
        streams = FakeStreams([SPEC_A, SPEC_B, StreamSpec("SIM:A", "f144", "other", "CA")])
        controller = ConfigController(streams)
        controller.handle_message(fc00(UpdateType.REMOVE, ("", "f144", "data", 0, 0)))
        assert set(controller.specs()) == {SPEC_B, StreamSpec("SIM:A", "f144", "other", "CA")}

    def test_rejected_message_changes_nothing_and_notifies_nobody(self):
        streams = FakeStreams([SPEC_A])
        seen = []
        controller = ConfigController(streams, [seen.append])
        assert not controller.handle_message(b"junk junk junk")
        assert controller.specs() == [SPEC_A] and seen == []

    def test_rejected_replace_keeps_every_stream_and_notifies_nobody(self):
        streams = FakeStreams([SPEC_A, SPEC_B])
        seen = []
        controller = ConfigController(streams, [seen.append])
        typo = ("SIM:C", "f144x", "data", Protocol.CA, 0)
        assert not controller.handle_message(fc00(UpdateType.REPLACE, typo))
        assert not controller.handle_message(fc00(UpdateType.REPLACE))
        assert set(controller.specs()) == {SPEC_A, SPEC_B} and seen == []

    def test_removeall(self):
        streams = FakeStreams([SPEC_A, SPEC_B])
        controller = ConfigController(streams)
        assert controller.handle_message(fc00(UpdateType.REMOVEALL))
        assert controller.specs() == []

    def test_replace_is_removeall_then_add_and_listeners_see_only_the_result(self):
        streams = FakeStreams([SPEC_A])
        seen = []
        controller = ConfigController(streams, [seen.append])
        assert controller.handle_message(fc00(UpdateType.REPLACE, B))
        assert streams.calls == [("remove_all",), ("add", SPEC_B)]
        assert seen == [[SPEC_B]]

    def test_replace_holds_the_lock_so_readers_never_see_the_empty_middle(self):
        import threading

        streams = FakeStreams([SPEC_A])
        controller = ConfigController(streams)
        observed = []
        reader_done = threading.Event()
        original_add = streams.add

        def add_while_another_thread_reads(spec):
            reader = threading.Thread(
                target=lambda: (observed.append(controller.specs()), reader_done.set())
            )
            reader.start()
            # The reader must block on the lock while the REPLACE is in progress.
            assert not reader_done.wait(0.2)
            result = original_add(spec)
            return result

        streams.add = add_while_another_thread_reads
        controller.handle_message(fc00(UpdateType.REPLACE, B))
        assert reader_done.wait(5)
        assert observed == [[SPEC_B]]

    def test_a_failing_listener_does_not_stop_the_others(self, caplog):
        seen = []

        def broken(_specs):
            raise RuntimeError("boom")

        controller = ConfigController(FakeStreams(), [broken, seen.append])
        assert controller.handle_message(fc00(UpdateType.ADD, A))
        assert seen == [[SPEC_A]]
        assert "boom" in caplog.text


class TestStreamPattern:
    @pytest.mark.parametrize(
        "pattern, channel, expected",
        [
            ("SIM:A", "SIM:A", True),
            ("SIM:*", "SIM:A:B", True),
            ("SIM:?", "SIM:A", True),
            ("SIM:?", "SIM:AB", False),
            ("sim:*", "SIM:A", False),  # case-sensitive
            ("SIM:[AB]", "SIM:A", False),  # brackets are literal
            ("SIM:[AB]", "SIM:[AB]", True),
            ("A.B", "AxB", False),  # regex characters are literal
            ("*", "", True),
        ],
    )
    def test_channel_wildcards(self, pattern, channel, expected):
        spec = StreamSpec(channel, "f144", "t", "CA")
        assert StreamPattern(channel=pattern).matches(spec) is expected

    def test_topic_wildcard_and_exact_schema(self):
        spec = StreamSpec("X", "f144", "data_1", "CA")
        assert StreamPattern(topic="data_?").matches(spec)
        assert not StreamPattern(topic="data_?", schema="f14*").matches(spec)
        assert StreamPattern(schema="f144").matches(spec)
        assert StreamPattern().matches(spec)
