"""Our bounds-checked fc00 reader gives what the schema library's decoder gives."""

import random

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import (
    StreamInfo,
    deserialise_fc00,
    serialise_fc00,
)

from forwarder.config.fc00_check import MalformedBuffer, read_fc00


def _random_streams(rng: random.Random, n: int) -> list[StreamInfo]:
    alphabet = "abcXYZ019:._-é→"
    word = lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70)))  # noqa: E731
    return [
        StreamInfo(word(), word(), word(), rng.choice([0, 1, 2, 7]), rng.choice([0, 1, 5]))
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_reads_what_the_library_reads(seed):
    rng = random.Random(seed)
    kind = rng.choice([UpdateType.ADD, UpdateType.REMOVE, UpdateType.REMOVEALL, UpdateType.REPLACE])
    buf = serialise_fc00(kind, _random_streams(rng, rng.randint(0, 50)))
    expected = deserialise_fc00(buf)
    change, streams = read_fc00(buf)
    assert change == expected.config_change
    assert streams == list(expected.streams)


def test_every_truncation_is_rejected_or_reads_whole_streams_only():
    buf = serialise_fc00(UpdateType.ADD, [StreamInfo("SIM:LONG-NAME", "f144", "topic", 1, 0)])
    for cut in range(len(buf)):
        try:
            _change, streams = read_fc00(buf[:cut])
        except (MalformedBuffer, UnicodeDecodeError):
            continue
        assert all(s.channel in ("", "SIM:LONG-NAME") for s in streams), cut
