"""Test-side client of a running forwarder: send fc00 commands, read its x5f2 status.

Commands are built with ``streaming_data_types.serialise_fc00`` and produced with
kafka-python, so the test never shares code with the forwarder's own Kafka layer. The status
topic is read with ``helpers.kafka_helpers.TopicReader``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaProducer
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00

from helpers.flatbuffers_helpers import X5f2
from helpers.kafka_helpers import TopicReader
from helpers.polling import wait_until

PROTOCOLS = {"PVA": Protocol.PVA, "CA": Protocol.CA, "FAKE": Protocol.FAKE}
_PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
# Stream schemas whose data messages carry another schema id.
_OUTPUT_SCHEMAS = {"nttable_se00": "se00", "nttable_senv": "senv"}
SEEN_STREAMS = 10  # streams a timeout message names; the rest are counted


@dataclass(frozen=True)
class Stream:
    """One stream as a test writes it: Stream("T1:DOUBLE", "f144", topic, "CA")."""

    channel: str
    schema: str
    topic: str
    protocol: str = "CA"
    periodic: bool = False

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(channel, protocol, topic, schema), as the forwarder's status lists streams."""
        return (self.channel, self.protocol, self.topic, self.schema)

    @property
    def output_schema(self) -> str:
        """The schema id of the data messages the stream sends, e.g. "se00" for nttable_se00."""
        return _OUTPUT_SCHEMAS.get(self.schema, self.schema)

    def info(self) -> StreamInfo:
        return StreamInfo(
            self.channel, self.schema, self.topic, PROTOCOLS[self.protocol], int(self.periodic)
        )


def fc00(update_type: int, streams: Iterable[Stream] = ()) -> bytes:
    return serialise_fc00(update_type, [s.info() for s in streams])


def split_exactly(shares: Iterable[Iterable], expected: set, *, every_member_busy=True) -> bool:
    """True if group members' stream lists (one per member) together are ``expected`` with
    no stream listed twice (and, unless told otherwise, every member listing some)."""
    shares = [list(share) for share in shares]
    listed = [key for share in shares for key in share]
    if every_member_busy and not all(shares):
        return False
    return set(listed) == expected and len(listed) == len(expected)


def status_streams(status: X5f2) -> set[tuple[str, str, str, str]]:
    """The (channel, protocol, topic, schema) set a status message lists."""
    out = set()
    for entry in status.streams():
        protocol = entry.get("protocol", "")
        if isinstance(protocol, int):
            protocol = _PROTOCOL_NAMES.get(protocol, str(protocol))
        out.add(
            (
                entry.get("channel_name", entry.get("channel", "")),
                str(protocol).upper(),
                entry.get("output_topic", entry.get("topic", "")),
                entry.get("schema", ""),
            )
        )
    return out


@dataclass(frozen=True)
class StatusRecord:
    kafka_timestamp_ms: int
    received: float  # time.time() when the test read it
    status: X5f2

    @property
    def streams(self) -> set[tuple[str, str, str, str]]:
        return status_streams(self.status)


class ForwarderControl:
    """Commands to one forwarder's config topic and a reader of its status topic."""

    def __init__(self, bootstrap: str, config_topic: str, status_topic: str):
        self.bootstrap = bootstrap
        self.config_topic = config_topic
        self.status_topic = status_topic
        self._producer: KafkaProducer | None = None
        self._reader: TopicReader | None = None
        self.statuses: list[StatusRecord] = []
        self.non_status: list[bytes] = []  # anything on the status topic that is not x5f2
        self._parts: dict[int, dict[int, X5f2]] = {}  # cycle -> index -> part of a status
        self.sent: list[tuple[float, bytes]] = []  # (time.time() after ack, payload)

    # -- commands -----------------------------------------------------------------------------

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        return self._producer

    def send_raw(self, payload: bytes) -> float:
        """Produce ``payload`` to the config topic, wait for the ack; returns the ack time."""
        self._get_producer().send(self.config_topic, value=bytes(payload)).get(timeout=30)
        sent_at = time.time()
        self.sent.append((sent_at, bytes(payload)))
        return sent_at

    def add(self, streams: Iterable[Stream]) -> float:
        return self.send_raw(fc00(UpdateType.ADD, list(streams)))

    def remove(self, channel: str = "", schema: str = "", topic: str = "") -> float:
        """REMOVE every stream matching the pattern (empty fields match anything)."""
        return self.send_raw(fc00(UpdateType.REMOVE, [Stream(channel, schema, topic)]))

    def remove_all(self) -> float:
        return self.send_raw(fc00(UpdateType.REMOVEALL))

    def replace(self, streams: Iterable[Stream]) -> float:
        return self.send_raw(fc00(UpdateType.REPLACE, list(streams)))

    def add_and_wait(
        self, streams: Iterable[Stream], *readers: TopicReader, timeout: float
    ) -> list:
        """ADD ``streams`` and wait until the status lists exactly them; given ``readers`` of
        topics, wait then for the first message of each stream sending to one of those
        topics. Returns those first messages, in the order of ``streams`` (each wait has
        ``timeout``)."""
        streams = list(streams)
        self.add(streams)
        self.wait_for_streams(streams, timeout=timeout)
        by_topic = {reader.topic: reader for reader in readers}
        return [
            by_topic[s.topic].wait_for_count(
                1,
                schema=s.output_schema,
                source=s.channel,
                timeout=timeout,
                what=f"the first {s.output_schema} of {s.channel} over {s.protocol}",
            )[0]
            for s in streams
            if s.topic in by_topic
        ]

    # -- status -------------------------------------------------------------------------------

    def _get_reader(self) -> TopicReader:
        if self._reader is None:
            self._reader = TopicReader(self.bootstrap, self.status_topic)
        return self._reader

    def poll_status(self, timeout_ms: int = 100) -> list[StatusRecord]:
        """Read what arrived on the status topic since the last poll; returns the new ones."""
        new: list[StatusRecord] = []
        now = time.time()
        reader = self._get_reader()
        records = reader.poll(timeout_ms)
        reader.records.clear()  # kept here as statuses: a long run must not hold them twice
        for record in records:
            if record.schema_id != b"x5f2":
                self.non_status.append(record.value)
                continue
            status = self._whole(record.message)
            if status is not None:
                new.append(StatusRecord(record.kafka_timestamp_ms, now, status))
        self.statuses.extend(new)
        return new

    def _whole(self, status: X5f2) -> X5f2 | None:
        """``status``, or, for a status split into parts, the whole one once its last part
        is in (its ``streams`` the union of the parts'); None while parts are missing."""
        part = status.status.get("part") if isinstance(status.status, dict) else None
        if not isinstance(part, dict):
            return status
        parts = self._parts.setdefault(part["cycle"], {})
        parts[part["index"]] = status
        if len(parts) < part["count"]:
            return None
        del self._parts[part["cycle"]]
        streams = [e for i in sorted(parts) for e in parts[i].streams()]
        whole = {**status.status, "streams": streams}
        del whole["part"]
        return dataclasses.replace(status, status=whole, status_json=json.dumps(whole))

    def latest_status(self) -> X5f2 | None:
        """The newest x5f2 read so far (after a poll), decoded with ``.status`` parsed."""
        self.poll_status()
        return self.statuses[-1].status if self.statuses else None

    def wait_for_status(
        self,
        predicate: Callable[[StatusRecord], bool] = lambda r: True,
        *,
        timeout: float,
        what: str = "a status message",
        since_ms: int | None = None,
    ) -> StatusRecord:
        """Wait for a status record (Kafka timestamp >= ``since_ms`` if given) to match."""

        def found():
            self.poll_status()
            for record in self.statuses:
                if since_ms is not None and record.kafka_timestamp_ms < since_ms:
                    continue
                if predicate(record):
                    return record
            return None

        return wait_until(found, timeout=timeout, what=what, seen=self._seen, interval=0.02)

    def wait_for_streams(
        self,
        expected: Iterable[tuple[str, str, str, str]] | Iterable[Stream],
        timeout: float = 15.0,
        *,
        since_ms: int | None = None,
    ) -> StatusRecord:
        """Wait until the newest status lists exactly ``expected`` (channel, protocol, topic,
        schema) tuples (or Streams). Only statuses newer than ``since_ms`` count if given."""
        want = {s.key if isinstance(s, Stream) else tuple(s) for s in expected}

        def found():
            self.poll_status()
            candidates = [
                r for r in self.statuses if since_ms is None or r.kafka_timestamp_ms >= since_ms
            ]
            if candidates and candidates[-1].streams == want:
                return candidates[-1]
            return None

        return wait_until(
            found,
            timeout=timeout,
            what=f"a status listing exactly {sorted(want)}",
            seen=self._seen,
            interval=0.02,
        )

    # -- a status topic that the members of a group share ------------------------------------

    def newest_by_member(self, since_ms: int = 0) -> dict[str, StatusRecord]:
        """member_id -> the newest status of that group member sent since ``since_ms`` (a
        member that stopped reporting before then, e.g. a killed one, is left out)."""
        self.poll_status()
        newest: dict[str, StatusRecord] = {}
        for record in self.statuses:
            member = (record.status.status or {}).get("member_id")
            if record.kafka_timestamp_ms >= since_ms and member:
                newest[member] = record
        return newest

    def wait_members_share(
        self,
        expected: Iterable[tuple[str, str, str, str]],
        members: int,
        *,
        since_ms: int,
        timeout: float,
        what: str,
    ) -> dict[str, StatusRecord]:
        """Wait until exactly ``members`` members list streams in their newest statuses
        (since ``since_ms``), together ``expected`` with no stream twice; returns those
        statuses by member_id."""
        expected = set(expected)

        def shared():
            busy = {m: r for m, r in self.newest_by_member(since_ms).items() if r.streams}
            shares = [record.streams for record in busy.values()]
            return busy if len(busy) == members and split_exactly(shares, expected) else None

        def seen():
            newest = self.newest_by_member(since_ms)
            listed = [key for record in newest.values() for key in record.streams]
            return (
                f"streams per member: { {m: len(r.streams) for m, r in newest.items()} }; "
                f"{len(expected - set(listed))} missing, {len(set(listed) - expected)} extra, "
                f"{len(listed) - len(set(listed))} listed twice"
            )

        return wait_until(shared, timeout=timeout, what=what, seen=seen, interval=0.5)

    def _seen(self) -> str:
        if not self.statuses:
            return f"no x5f2 on {self.status_topic} ({len(self.non_status)} other messages)"
        last = self.statuses[-1]
        streams = sorted(last.streams)
        shown = streams if len(streams) <= SEEN_STREAMS else [*streams[:SEEN_STREAMS], "..."]
        # Only a few: a timeout message with 10,000 streams would be hundreds of KB.
        return (
            f"{len(self.statuses)} statuses; newest at {last.kafka_timestamp_ms} lists "
            f"{len(streams)} streams: {shown}"
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def now_ms() -> int:
    return int(time.time() * 1000)
