"""Kafka source and sink in pure Python, on kafka-python.

`ReadFromKafka` is a splittable DoFn. Its restriction is a set of partitions
with a cursor each; the initial split gives every partition its own
restriction, so production runners read partitions in parallel. Bounded, a
read goes from the start position up to the high watermark taken at start;
streaming, it keeps going until `max_records`, `max_read_time` or its
`ReadStop` is requested (SIGINT/SIGTERM in the CLI), and one extra restriction adopts
partitions added to the topic while the job runs (checked every
`partition_discovery_interval_s`).

Offsets are committed to the consumer group by a bundle finalizer, which the
runner calls only once the bundle's outputs are durable. On the local runner
the sink (`WriteToKafka`) is fused into the reader's bundle and flushes in
`finish_bundle`, so a committed offset means the outputs are in Kafka
(at-least-once).

Kafka clients are created in `setup()`: they hold sockets and threads and
cannot be pickled with the DoFn.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import threading
import time
from typing import Any, Iterable, Mapping, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.windowed_value import WindowedValue
from apache_beam.utils.timestamp import Duration, Timestamp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (ClusterAuthorizationFailedError, InvalidRecordError, InvalidTopicError, KafkaError,
                          KafkaTimeoutError, MessageSizeTooLargeError, RecordListTooLargeError,
                          TopicAuthorizationFailedError)
from kafka.structs import OffsetAndMetadata

from wirecopy.schemas.published_at import parse_published_at
from wirecopy.schemas.records import SourceRecord

_LOG = logging.getLogger(__name__)

# How long one process() call reads before it checkpoints: the bundle ends, the
# sink flushes and the offsets are committed at this cadence. Time alone bounds
# a bundle (the sink bounds its own memory): each bundle costs the local runner
# ~13 ms, so capping bundles at 5,000 records cost ~8 % of read throughput.
_BUNDLE_SECONDS = 1.0
_MAX_POLL_RECORDS = 5_000
_POLL_TIMEOUT_MS = 200
# Records asked of one poll. The bundle deadline is checked between polls, and
# the stages fused after the reader process a poll's records before the next
# one, so the size adapts: a poll's records should take about this long
# downstream. Fast stages get big polls (a poll has a fixed cost: a hop to the
# client's network thread); slow ones get small polls and bundles that still
# end near their deadline, so offsets commit steadily.
_POLL_SECONDS = 0.1
_FIRST_POLL_RECORDS = 500  # kafka-python's own default
_PROGRESS_LOG_SECONDS = 10.0
_GLOBAL_WINDOWS = (GlobalWindow(),)
# What at-least-once output rests on; producer_config may not weaken it.
_SINK_GUARANTEES = {"acks": "all", "enable_idempotence": True}
# The sink keeps each message until it is acknowledged, to resend it; past this
# it flushes mid-bundle. Bounded, and kept on the calling thread: messages freed
# by kafka-python's I/O thread (callbacks holding them) cost a page fault per
# message, ~30 % of the sink's time.
_MAX_UNACKED_BYTES = 4 * 1024 * 1024
# Delivery failures no retry can fix; every other one is retried with a new
# producer before the bundle fails.
_UNDELIVERABLE = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError, InvalidRecordError,
                  TopicAuthorizationFailedError, ClusterAuthorizationFailedError)
# How often a streaming read looks for partitions added to its topic: a new
# partition's first records wait up to this long; each look is one metadata request.
DEFAULT_PARTITION_DISCOVERY_INTERVAL_S = 30.0
_SECRET_MARKERS = ("password", "secret", "token", "jaas", "keyfile")
# What the producer adds around a key and value (record batch and record
# headers: about a hundred bytes), with room to spare; max_request_size counts it.
_RECORD_FRAMING_BYTES = 512


class ReadStop:
    """A request to end one run's Kafka reads cleanly: whoever runs the
    pipeline keeps it and calls `request()`; the run's readers see it at their
    next poll, end their restrictions, and the pipeline finishes its bundles
    and commits.

    It travels with the pickled reader as a Beam `Shared` handle: a reader
    unpickled in the requester's process (the local runner, Prism's loopback
    workers) acquires the requester's own event. Workers in another process
    never see it; such jobs are stopped through the job service
    (`cli.JobStopper` cancels them).
    """

    def __init__(self):
        self._handle = shared.Shared()
        self._event = self._handle.acquire(threading.Event)  # held: Shared keeps only weak references

    def __getstate__(self):
        return {"_handle": self._handle}

    def __setstate__(self, state):
        self._handle = state["_handle"]
        self._event = self._handle.acquire(threading.Event)

    def request(self) -> None:
        self._event.set()

    def requested(self) -> bool:
        return self._event.is_set()


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """Client configuration fit for logs and display data: secrets masked."""
    return {key: "***" if any(marker in key.lower() for marker in _SECRET_MARKERS) else value
            for key, value in config.items()}


class StartPosition(str, enum.Enum):
    COMMITTED = "committed"  # the group's committed offset, else `auto_offset_reset` (earliest by default)
    EARLIEST = "earliest"
    LATEST = "latest"


class TimestampKind(str, enum.Enum):
    PROCESSING_TIME = "processing-time"
    CREATE_TIME = "create-time"
    LOG_APPEND_TIME = "log-append-time"
    PUBLISHED_AT = "published-at"


@dataclasses.dataclass(frozen=True)
class TimestampPolicy:
    """Event time of each record, and the watermark of a partition.

    `timestamp_micros(record)` gives a record's event time, in microseconds
    since the epoch (an int, not a `Timestamp`: the reader calls it for every
    record, and Beam stores event times as micros anyway); `watermark(latest,
    caught_up)` gives the partition's watermark from the latest event time
    read and whether the reader has caught up with the partition's end. An
    idle, caught-up partition advances to now (minus the allowed delay) so it
    never holds the pipeline's watermark back. Callers keep it monotonic.
    """

    kind: TimestampKind = TimestampKind.CREATE_TIME
    max_delay: Duration = Duration(seconds=0)

    def timestamp_micros(self, record) -> int:
        if self.kind is TimestampKind.PROCESSING_TIME:
            return time.time_ns() // 1000
        if self.kind is TimestampKind.PUBLISHED_AT:
            published = _published_at_micros(record.value)
            if published is not None:
                return published
        # Records from old clients may carry no timestamp (-1).
        if record.timestamp is None or record.timestamp < 0:
            return time.time_ns() // 1000
        return record.timestamp * 1000

    def watermark(self, latest_micros: int | None, caught_up: bool) -> Timestamp | None:
        if self.kind is TimestampKind.PROCESSING_TIME or caught_up:
            return Timestamp.now() - self.max_delay
        return None if latest_micros is None else Timestamp(micros=latest_micros) - self.max_delay


def _published_at_micros(value: bytes | None) -> int | None:
    try:
        published = parse_published_at(orjson.loads(value).get("published_at"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return None if published is None else Timestamp.from_utc_datetime(published).micros


@dataclasses.dataclass(frozen=True)
class KafkaReadSpec:
    """Everything the source needs; immutable, so it ships with the DoFns.

    `consumer_config` is passed to kafka-python's KafkaConsumer as is
    (security_protocol, sasl_mechanism, ssl_cafile, ...); it is masked in
    logs and display data.
    """

    bootstrap_servers: str
    topic: str
    group_id: str
    streaming: bool = False
    start_position: StartPosition = StartPosition.COMMITTED
    start_time: dt.datetime | None = None
    timestamp_policy: TimestampPolicy = TimestampPolicy()
    partition_discovery_interval_s: float = DEFAULT_PARTITION_DISCOVERY_INTERVAL_S
    max_records: int | None = None
    max_read_time_s: float | None = None
    consumer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        if not self.topic:
            raise ValueError("topic is required")
        if not self.group_id:
            raise ValueError("group_id is required: offsets are committed to it")
        if self.max_records is not None and self.max_records <= 0:
            raise ValueError("max_records must be positive")
        if self.max_read_time_s is not None and self.max_read_time_s <= 0:
            raise ValueError("max_read_time_s must be positive")
        if self.partition_discovery_interval_s <= 0:
            raise ValueError("partition_discovery_interval_s must be positive")
        if self.start_time is not None and self.start_time.tzinfo is None:
            raise ValueError("start_time needs a time zone")
        unknown = set(self.consumer_config) - set(KafkaConsumer.DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown kafka-python consumer settings: {', '.join(sorted(unknown))}")

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["consumer_config"] = redacted(self.consumer_config)
        return f"KafkaReadSpec({', '.join(f'{name}={value!r}' for name, value in fields.items())})"

    def new_consumer(self, in_group: bool = True) -> KafkaConsumer:
        """A consumer with the spec's settings; `in_group=False` leaves out the
        group id, for a consumer that only fetches (its polls then never wait
        on the group coordinator)."""
        settings = {
            "enable_auto_commit": False,
            # Never create a topic by asking for it: a deleted input topic
            # would come back with the broker's default partitions.
            "allow_auto_create_topics": False,
            "auto_offset_reset": "earliest",
            # Metadata refreshes at the discovery interval, so new partitions show up.
            "metadata_max_age_ms": int(self.partition_discovery_interval_s * 1000),
            # The broker answers an idle partition's fetch within one poll, so the
            # reader learns it has caught up (and advances the watermark) at once.
            "fetch_max_wait_ms": _POLL_TIMEOUT_MS // 2,
            **self.consumer_config,
        }
        return KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=self.group_id if in_group else None,
                             **settings)


# ----------------------------------------------------------------- restriction


@dataclasses.dataclass(frozen=True)
class PartitionCursor:
    """Where one partition's read stands.

    `epoch` counts how often the broker's log restarted below our position (a
    broker that lost its data): positions compare as (epoch, offset), so the
    reader can go on from the new log's start without claiming backwards.
    """

    partition: int
    offset: int
    stop: int | None = None
    epoch: int = 0

    @property
    def position(self) -> tuple[int, int]:
        return (self.epoch, self.offset)


@dataclasses.dataclass(frozen=True)
class PartitionSet:
    """A restriction: partitions with their cursors; in streaming, plus the
    right to adopt partitions numbered `discover_from` or more when they appear."""

    topic: str
    cursors: tuple[PartitionCursor, ...]
    discover_from: int | None = None

    def is_bounded(self) -> bool:
        return self.discover_from is None and all(c.stop is not None for c in self.cursors)


class Claim(NamedTuple):
    partition: int
    epoch: int
    offset: int


class Adopt(NamedTuple):
    partition: int
    offset: int


END_OF_READ = "end-of-read"  # claiming it finishes the restriction (stop requested)


class PartitionSetTracker(RestrictionTracker):
    def __init__(self, restriction: PartitionSet):
        self._restriction = restriction
        self._cursors = {c.partition: c for c in restriction.cursors}
        self._claimed: dict[int, tuple[int, int]] = {}
        self._exhausted: set[int] = set()
        self._finished = False
        self._claim_count = 0

    def current_restriction(self) -> PartitionSet:
        return self._restriction

    def try_claim(self, position) -> bool:
        if self._finished:
            return False
        if position == END_OF_READ:
            self._finish()
            return False
        if isinstance(position, Adopt):
            discover_from = self._restriction.discover_from
            if discover_from is None or position.partition < discover_from or position.partition in self._cursors:
                raise ValueError(f"cannot adopt partition {position.partition} in {self._restriction}")
            cursor = PartitionCursor(position.partition, position.offset)
            self._cursors[position.partition] = cursor
            self._restriction = dataclasses.replace(self._restriction, cursors=self._restriction.cursors + (cursor,))
            return True
        cursor = self._cursors.get(position.partition)
        if cursor is None or position.partition in self._exhausted:
            return False
        claim = (position.epoch, position.offset)
        if claim < cursor.position or claim <= self._claimed.get(position.partition, (-1, -1)):
            raise ValueError(f"claims must move forward: {position} after {self._claimed.get(position.partition)}")
        if cursor.stop is not None and position.offset >= cursor.stop:
            self._exhausted.add(position.partition)
            return False
        self._claimed[position.partition] = claim
        self._claim_count += 1
        return True

    def _finish(self) -> None:
        """Shrink the restriction to what was claimed: nothing is left to do."""
        cursors = []
        for cursor in self._cursors.values():
            epoch, last = self._claimed.get(cursor.partition, (cursor.epoch, cursor.offset - 1))
            cursors.append(dataclasses.replace(cursor, epoch=epoch, stop=last + 1) if epoch == cursor.epoch
                           else dataclasses.replace(cursor, stop=cursor.offset))
        self._restriction = dataclasses.replace(self._restriction, cursors=tuple(cursors), discover_from=None)
        self._finished = True

    def _next_cursor(self, cursor: PartitionCursor) -> PartitionCursor:
        if cursor.partition not in self._claimed:
            return cursor
        epoch, offset = self._claimed[cursor.partition]
        return dataclasses.replace(cursor, epoch=epoch, offset=offset + 1)

    def try_split(self, fraction_of_remainder):
        # Only checkpoints: partitions are split apart once, at the start.
        if fraction_of_remainder != 0 or self._finished:
            return None
        remaining = tuple(
            self._next_cursor(c) for c in self._cursors.values()
            if c.partition not in self._exhausted and (c.stop is None or self._next_cursor(c).offset < c.stop)
        )
        residual = PartitionSet(self._restriction.topic, remaining, self._restriction.discover_from)
        self._finish()
        return self._restriction, residual

    def check_done(self):
        if self._finished:
            return
        unfinished = [c.partition for c in self._cursors.values()
                      if c.partition not in self._exhausted
                      and (c.stop is None or self._claimed.get(c.partition, (c.epoch, c.offset - 1))[1] < c.stop - 1)]
        if unfinished or self._restriction.discover_from is not None:
            raise ValueError(f"partitions {unfinished} of {self._restriction.topic} are not read to their end")

    def current_progress(self) -> RestrictionProgress:
        remaining = sum(max(c.stop - self._next_cursor(c).offset, 0) for c in self._cursors.values() if c.stop is not None)
        return RestrictionProgress(completed=self._claim_count, remaining=remaining)

    def is_bounded(self) -> bool:
        return self._restriction.is_bounded()


class _PartitionSetProvider(RestrictionProvider):
    def initial_restriction(self, plan: PartitionSet) -> PartitionSet:
        return plan

    def split(self, plan: PartitionSet, restriction: PartitionSet):
        for cursor in restriction.cursors:
            yield PartitionSet(restriction.topic, (cursor,))
        if restriction.discover_from is not None:
            yield PartitionSet(restriction.topic, (), restriction.discover_from)

    def create_tracker(self, restriction: PartitionSet) -> PartitionSetTracker:
        return PartitionSetTracker(restriction)

    def restriction_size(self, plan: PartitionSet, restriction: PartitionSet) -> int:
        return sum(max(c.stop - c.offset, 0) for c in restriction.cursors if c.stop is not None)

    def truncate(self, plan: PartitionSet, restriction: PartitionSet):
        # On drain, stop reading: what was not read is not committed and the
        # next run starts there.
        return None


# ----------------------------------------------------------------- offsets


def start_offsets(consumer: KafkaConsumer, partitions: list[TopicPartition], position: StartPosition,
                  start_time: dt.datetime | None, earliest: dict[TopicPartition, int],
                  ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Where a read begins in each partition, given the partitions' first
    offsets and high watermarks (`log_extents`)."""
    if start_time is not None:
        return offsets_at_time(consumer, partitions, int(start_time.timestamp() * 1000), ends)
    if position is StartPosition.EARLIEST:
        return earliest
    if position is StartPosition.LATEST:
        return ends
    fallback = earliest if consumer.config["auto_offset_reset"] == "earliest" else ends
    starts = {}
    for partition in partitions:
        committed = consumer.committed(partition)
        starts[partition] = fallback[partition] if committed is None else max(committed, earliest[partition])
    return starts


def offsets_at_time(consumer: KafkaConsumer, partitions: list[TopicPartition], time_ms: int,
                    ends: dict[TopicPartition, int], timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """The first offset of each partition whose record is at or after `time_ms`, else the end.

    Asks the broker (ListOffsets by time), then confirms by reading from the
    offset it gave until a record really is at or after the time: some
    brokers (Tansu) answer with an earlier offset. On Kafka the first fetched
    record confirms the answer.
    """
    hints = consumer.offsets_for_times({p: time_ms for p in partitions})
    starts = {p: ends[p] if hints[p] is None else hints[p].offset for p in partitions}
    unconfirmed = {p for p in partitions if starts[p] < ends[p]}
    if not unconfirmed:
        return starts
    consumer.assign(sorted(unconfirmed))
    for partition in unconfirmed:
        consumer.seek(partition, starts[partition])
    deadline = time.monotonic() + timeout_s
    while unconfirmed and time.monotonic() < deadline:
        for partition, records in consumer.poll(timeout_ms=_POLL_TIMEOUT_MS).items():
            if partition not in unconfirmed:
                continue
            confirmed = next((r.offset for r in records if r.timestamp >= time_ms), None)
            if confirmed is not None or consumer.position(partition) >= ends[partition]:
                starts[partition] = ends[partition] if confirmed is None else confirmed
                unconfirmed.discard(partition)
                consumer.pause(partition)
    consumer.unsubscribe()
    if unconfirmed:
        raise TimeoutError(f"could not find the offsets at {time_ms} ms in {sorted(unconfirmed)} within {timeout_s} s")
    return starts


def high_watermarks(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, now."""
    return log_extents(consumer, partitions)[1]


def log_extents(consumer: KafkaConsumer, partitions: list[TopicPartition],
                timeout_s: float = 10.0) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first offset and the high watermark of each partition, now.

    ListOffsets (`end_offsets`) is the protocol's answer for the high
    watermark, but some brokers (Tansu) under-report it after multi-record
    batches; the high watermark in a fetch response is right everywhere, so
    this re-fetches each partition's last batch and takes the larger of the
    two. Both offsets are asked before that fetch: the consumer then has a
    fetch waiting at the log's end (up to `fetch_max_wait_ms`), and a broker
    answers a connection's requests in order, so a ListOffsets after it waits too.
    """
    ends = consumer.end_offsets(partitions)
    earliest = consumer.beginning_offsets(partitions)
    consumer.assign(partitions)
    for partition in partitions:
        consumer.seek(partition, max(ends[partition] - 1, earliest[partition]))
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(p) is None for p in partitions) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=1)
    highs = {p: max(ends[p], consumer.highwater(p) or 0) for p in partitions}
    consumer.unsubscribe()
    return earliest, highs


def group_lag(spec: KafkaReadSpec) -> dict[int, int]:
    """Partition → records of the topic that the spec's consumer group has not
    committed: the high watermark minus the committed offset (minus the log's
    start where the group never committed).

    Asked of Kafka, so it holds whatever the runner reports: the local
    runner's gauges (the reader's `backlog.*`) come out as an arbitrary
    bundle's value rather than the last one.
    """
    consumer = spec.new_consumer()
    try:
        partitions = [TopicPartition(spec.topic, n) for n in sorted(consumer.partitions_for_topic(spec.topic) or ())]
        earliest, ends = log_extents(consumer, partitions)
        return {p.partition: max(ends[p] - max(consumer.committed(p) or 0, earliest[p]), 0) for p in partitions}
    finally:
        consumer.close()


class _PlanReadFn(beam.DoFn):
    """Turns the impulse into the read plan: every partition with its start (and stop)."""

    def __init__(self, spec: KafkaReadSpec):
        self._spec = spec

    def setup(self):
        self._consumer = self._spec.new_consumer()

    def process(self, _impulse) -> Iterable[PartitionSet]:
        spec = self._spec
        numbers = self._consumer.partitions_for_topic(spec.topic)
        if not numbers:
            raise ValueError(f"topic {spec.topic!r} does not exist on {spec.bootstrap_servers}")
        partitions = [TopicPartition(spec.topic, n) for n in sorted(numbers)]
        earliest, ends = log_extents(self._consumer, partitions)
        starts = start_offsets(self._consumer, partitions, spec.start_position, spec.start_time, earliest, ends)
        stops = {p: None for p in partitions} if spec.streaming else ends
        for partition in partitions:
            stop = stops[partition]
            _LOG.info("reading %s[%d] from offset %d to %s", partition.topic, partition.partition,
                      starts[partition], "the end of time" if stop is None else stop)
        yield PartitionSet(
            spec.topic,
            tuple(PartitionCursor(p.partition, starts[p], None if stops[p] is None else max(stops[p], starts[p]))
                  for p in partitions),
            discover_from=max(numbers) + 1 if spec.streaming else None,
        )

    def teardown(self):
        self._consumer.close()


# ----------------------------------------------------------------- reader


class _ReadFn(beam.DoFn):
    def __init__(self, spec: KafkaReadSpec, stop: ReadStop | None):
        self._spec = spec
        self._stop = stop

    def setup(self):
        spec = self._spec
        # Two clients, as Java's KafkaIO has: one fetches (assigned partitions,
        # no group), one commits the group's offsets. A runner may run the
        # finalizer (commit) on another thread than process() (poll), and
        # kafka-python clients are not thread-safe, so they share nothing;
        # finalizers of several bundles may overlap, hence the committer's lock.
        self._consumer = spec.new_consumer(in_group=False)
        self._committer = spec.new_consumer()
        self._committer_lock = threading.Lock()
        self._records_read = 0
        self._next_offsets: dict[TopicPartition, int] = {}
        self._highwaters: dict[TopicPartition, int] = {}  # the last known, per partition
        self._started_at: float | None = None
        self._last_progress_log = time.monotonic()
        self._last_discovery = 0.0
        self._poll_records = _FIRST_POLL_RECORDS
        self._last_poll: tuple[float, int] | None = None  # when the last poll returned, and how many records
        self._records = Metrics.counter("wirecopy", f"records_read.{spec.topic}")
        self._bytes = Metrics.counter("wirecopy", f"bytes_read.{spec.topic}")
        self._resets = Metrics.counter("wirecopy", f"log_resets.{spec.topic}")

    def _budget(self) -> int | None:
        """Records this reader may still read under `max_records` (None: no limit)."""
        return None if self._spec.max_records is None else max(self._spec.max_records - self._records_read, 0)

    def _should_stop(self) -> bool:
        spec = self._spec
        if (self._stop is not None and self._stop.requested()) or self._budget() == 0:
            return True
        return spec.max_read_time_s is not None and time.monotonic() - self._started_at >= spec.max_read_time_s

    def _fetch_only(self, cursors: dict[TopicPartition, PartitionCursor]) -> None:
        """Fetch exactly these partitions, from their cursors.

        Re-assigning the same partitions is a no-op that keeps what was
        prefetched, so a partition is re-positioned only when its cursor is
        not where this consumer left it. (Pausing the other partitions instead
        would keep their prefetched data too, but kafka-python 3.0 can then
        stop fetching a resumed partition for good.)
        """
        previous = self._consumer.assignment()
        self._consumer.assign(list(cursors))
        for partition, cursor in cursors.items():
            if partition not in previous or self._next_offsets.get(partition) != cursor.offset:
                self._consumer.seek(partition, cursor.offset)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            with self._committer_lock:
                self._committer.commit({p: OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
        except KafkaError as error:
            # At-least-once still holds: the next run re-reads from the last
            # offsets that did commit.
            _LOG.warning("could not commit offsets %s: %s", offsets, error)

    def _adopt_new_partitions(self, tracker, restriction: PartitionSet) -> None:
        now = time.monotonic()
        if now - self._last_discovery < self._spec.partition_discovery_interval_s:
            return
        self._last_discovery = now
        known = {c.partition for c in restriction.cursors}
        numbers = self._consumer.partitions_for_topic(restriction.topic) or set()
        new = [TopicPartition(restriction.topic, n) for n in sorted(numbers)
               if n >= restriction.discover_from and n not in known]
        starts = self._consumer.beginning_offsets(new) if new else {}
        for partition in new:
            if tracker.try_claim(Adopt(partition.partition, starts[partition])):
                _LOG.info("new partition %s[%d]: reading it from offset %d", partition.topic, partition.partition,
                          starts[partition])

    def _size_next_poll(self) -> None:
        """Ask the next poll for as many records as the stages after the reader
        get through in `_POLL_SECONDS`, judging by the last poll's records."""
        if self._last_poll is None:
            return
        returned_at, records = self._last_poll
        if records:
            spent = max(time.monotonic() - returned_at, 1e-6)
            self._poll_records = max(1, min(_MAX_POLL_RECORDS, int(records * _POLL_SECONDS / spent)))

    def _poll(self) -> dict:
        self._size_next_poll()
        try:
            batches = self._consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=self._poll_records)
            self._last_poll = (time.monotonic(), sum(len(records) for records in batches.values()))
            return batches
        except KafkaError as error:
            if not error.retriable:
                raise
            _LOG.warning("Kafka unavailable, retrying: %s", error)
            time.sleep(_POLL_TIMEOUT_MS / 1000)
            return {}

    def _log_progress(self, positions: dict[TopicPartition, int]) -> None:
        """Backlog gauges and the periodic progress line, over every partition this reader has read.

        One call covers one restriction's partitions; the consumer knows a
        partition's high watermark only while it is assigned and has fetched
        it, so the last one known is kept per partition.
        """
        for partition in positions:
            highwater = self._consumer.highwater(partition)
            if highwater is not None:
                self._highwaters[partition] = highwater
        backlogs = {}
        for partition, position in sorted(self._next_offsets.items()):
            highwater = self._highwaters.get(partition)
            backlogs[partition] = None if highwater is None else max(highwater - position, 0)
            if partition in positions and highwater is not None:
                Metrics.gauge("wirecopy", f"backlog.{partition.topic}.{partition.partition}").set(backlogs[partition])
        now = time.monotonic()
        if now - self._last_progress_log < _PROGRESS_LOG_SECONDS:
            return
        self._last_progress_log = now
        described = ", ".join(
            f"{p.topic}[{p.partition}] at {self._next_offsets[p]} backlog {'?' if backlog is None else backlog}"
            for p, backlog in backlogs.items())
        rate = self._records_read / max(now - self._started_at, 1e-9)
        _LOG.info("read %d records (%.0f/s); %s", self._records_read, rate, described)

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        plan: PartitionSet,
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_PartitionSetProvider()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if self._started_at is None:
            self._started_at = time.monotonic()
        if self._should_stop():
            tracker.try_claim(END_OF_READ)
            return
        restriction = tracker.current_restriction()
        self._last_poll = None  # time between bundles is not the stages' processing time
        if restriction.discover_from is not None:
            self._adopt_new_partitions(tracker, restriction)
            restriction = tracker.current_restriction()
        policy = self._spec.timestamp_policy
        cursors = {TopicPartition(restriction.topic, c.partition): c for c in restriction.cursors}
        if not cursors:
            self._advance_watermark(watermark, policy.watermark(None, caught_up=True))
            tracker.defer_remainder(Duration(seconds=self._spec.partition_discovery_interval_s))
            return
        self._fetch_only(cursors)
        expected = {p: c.offset for p, c in cursors.items()}
        epochs = {p: c.epoch for p, c in cursors.items()}
        latest: dict[TopicPartition, int] = {}  # event-time micros
        done: set[TopicPartition] = set()
        deadline = time.monotonic() + _BUNDLE_SECONDS
        stopping = False
        while not stopping:
            batches = self._poll()
            for partition, records in batches.items():
                if partition in done:
                    continue
                if self._should_stop():
                    stopping = True
                    break
                if records[0].offset < expected[partition]:
                    # The broker's log restarted below our position (it lost
                    # its data): go on from the new log in a new epoch.
                    epochs[partition] += 1
                    self._resets.inc()
                    _LOG.warning("%s restarted at offset %d, below our position %d: reading on from there",
                                 partition, records[0].offset, expected[partition])
                stop = cursors[partition].stop
                if stop is not None and records[-1].offset >= stop:
                    records = [record for record in records if record.offset < stop]
                budget = self._budget()
                if budget is not None and len(records) >= budget:
                    records, stopping = records[:budget], True
                # One claim per batch: claiming an offset claims every offset before it.
                if records and tracker.try_claim(Claim(partition.partition, epochs[partition], records[-1].offset)):
                    expected[partition] = records[-1].offset + 1
                    self._records_read += len(records)
                    self._records.inc(len(records))
                    newest = latest.get(partition, -1 << 62)
                    size = 0
                    event_micros = event_time = None
                    for record in records:
                        micros = policy.timestamp_micros(record)
                        if micros != event_micros:
                            # Records of a batch often share a time (always
                            # with log-append time), so they share one
                            # Timestamp: Beam reads each output's (the
                            # watermark estimator observes it) and would
                            # otherwise make one per record.
                            event_micros, event_time = micros, Timestamp(micros=micros)
                            newest = max(newest, micros)
                        source_record = _source_record(record)
                        size += len(source_record.value)
                        # A WindowedValue, not a TimestampedValue: Beam would
                        # build a new GlobalWindow for each.
                        yield WindowedValue(source_record, event_time, _GLOBAL_WINDOWS)
                    latest[partition] = newest
                    self._bytes.inc(size)
                if stopping:
                    break
            if stopping:
                # Claiming the end finishes the restriction; what was not read
                # is not committed, so the next run starts there.
                tracker.try_claim(END_OF_READ)
                break
            try:
                positions = {p: self._consumer.position(p) for p in cursors}
            except KafkaError as error:
                # position() may validate offsets with the broker (after a
                # reconnect): a broker that is down is retried, as a poll is.
                if not error.retriable:
                    raise
                _LOG.warning("Kafka unavailable, retrying: %s", error)
                time.sleep(_POLL_TIMEOUT_MS / 1000)
                continue
            for partition in cursors:
                highwater = self._consumer.highwater(partition)
                if highwater is not None and highwater < expected[partition]:
                    # The log now ends below what we have read: the broker
                    # lost or truncated it. Read the new log from its start,
                    # in a new epoch; claiming the offset before that start
                    # records the rewind in the restriction itself.
                    start = self._consumer.beginning_offsets([partition])[partition]
                    _LOG.warning("%s now ends at %d, below our position %d: reading it again from offset %d",
                                 partition, highwater, expected[partition], start)
                    epochs[partition] += 1
                    self._resets.inc()
                    tracker.try_claim(Claim(partition.partition, epochs[partition], start - 1))
                    expected[partition] = start
                    self._consumer.seek(partition, start)
            for partition, cursor in cursors.items():
                if partition not in done and cursor.stop is not None and positions[partition] >= cursor.stop:
                    # Bounded end reached (offsets may have gaps): claiming the stop finishes it.
                    tracker.try_claim(Claim(partition.partition, epochs[partition], cursor.stop))
                    done.add(partition)
            if len(done) == len(cursors) and restriction.discover_from is None:
                break
            if self._should_stop():
                tracker.try_claim(END_OF_READ)
                break
            idle = not batches
            if time.monotonic() >= deadline or (idle and self._spec.streaming):
                # Checkpoint: end this bundle so the sink flushes and the
                # offsets commit, and let other restrictions have a turn.
                self._advance_watermark(watermark, self._watermark(policy, cursors, latest, positions))
                tracker.defer_remainder()
                break
        self._next_offsets.update(expected)
        self._log_progress(expected)
        advanced = {p: expected[p] for p, c in cursors.items() if (epochs[p], expected[p]) != c.position}
        if advanced:
            finalizer.register(lambda: self._commit(advanced))

    def _watermark(self, policy: TimestampPolicy, cursors, latest, positions) -> Timestamp | None:
        marks = []
        for partition in cursors:
            highwater = self._consumer.highwater(partition)
            caught_up = highwater is not None and positions[partition] >= highwater
            mark = policy.watermark(latest.get(partition), caught_up)
            if mark is None:
                return None  # a partition with unread records and no time yet holds the watermark
            marks.append(mark)
        return min(marks)

    @staticmethod
    def _advance_watermark(estimator, candidate: Timestamp | None) -> None:
        current = estimator.current_watermark()
        if candidate is not None and (current is None or candidate > current):
            estimator.set_watermark(candidate)

    def teardown(self):
        self._consumer.close()
        self._committer.close()


def _source_record(record) -> SourceRecord:
    # Positional: the reader builds one per record, and keywords cost twice as much.
    headers = tuple((name, value or b"") for name, value in record.headers) if record.headers else ()
    return SourceRecord(record.topic, record.partition, record.offset, record.value or b"", record.key,
                        record.timestamp, headers)


class ReadFromKafka(beam.PTransform):
    """Reads a topic as `SourceRecord`s (topic, partition, offset, timestamp,
    key, headers and value), timestamped by the spec's timestamp policy.

    `stop`: a `ReadStop` that ends a streaming read cleanly when requested
    (without one, it ends at the spec's `max_records` or `max_read_time_s`).
    """

    def __init__(self, spec: KafkaReadSpec, stop: ReadStop | None = None):
        super().__init__()
        self._spec = spec
        self._stop = stop

    def expand(self, pbegin):
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "PlanRead" >> beam.ParDo(_PlanReadFn(self._spec))
            | "ReadPartitions" >> beam.ParDo(_ReadFn(self._spec, self._stop))
        )

    def display_data(self):
        spec = self._spec
        return {
            "bootstrap_servers": spec.bootstrap_servers,
            "topic": spec.topic,
            "group_id": spec.group_id,
            "streaming": spec.streaming,
            "consumer_config": DisplayDataItem(repr(redacted(spec.consumer_config)), label="consumer config"),
        }


# ----------------------------------------------------------------- sink


@dataclasses.dataclass(frozen=True)
class KafkaMessage:
    """One record for the sink to write."""

    topic: str
    key: bytes | None
    value: bytes


def _delivery_error(outcome) -> Exception | None:
    """Why a sent message was not acknowledged (after a flush), or None if it was."""
    if isinstance(outcome, Exception):
        return outcome
    if outcome.succeeded():
        return None
    return outcome.exception or KafkaTimeoutError("no acknowledgement")


def largest_message_bytes(producer_config: Mapping[str, Any]) -> int:
    """The largest key plus value the sink can send with these producer settings."""
    max_request_size = producer_config.get("max_request_size", KafkaProducer.DEFAULT_CONFIG["max_request_size"])
    return int(max_request_size) - _RECORD_FRAMING_BYTES


def check_producer_config(producer_config: Mapping[str, Any]) -> None:
    """Raises ValueError for settings kafka-python does not know or that weaken the sink's guarantees."""
    unknown = set(producer_config) - set(KafkaProducer.DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown kafka-python producer settings: {', '.join(sorted(unknown))}")
    weakened = [key for key, value in _SINK_GUARANTEES.items() if producer_config.get(key, value) != value]
    if weakened:
        raise ValueError(f"the sink needs {', '.join(f'{k}={_SINK_GUARANTEES[k]}' for k in weakened)} "
                         "(at-least-once delivery); leave them out of producer_config")


class _WriteFn(beam.DoFn):
    def __init__(self, bootstrap_servers: str, producer_config: Mapping[str, Any], delivery_attempts: int):
        self._bootstrap_servers = bootstrap_servers
        self._producer_config = producer_config
        self._delivery_attempts = delivery_attempts

    def setup(self):
        self._producer = self._new_producer()
        self._written: dict[str, list[int]] = {}  # topic -> [records, bytes] acknowledged since setup
        self._last_progress_log = time.monotonic()

    def _new_producer(self) -> KafkaProducer:
        settings = {"linger_ms": 20, "batch_size": 256 * 1024, "allow_auto_create_topics": False,
                    **self._producer_config, **_SINK_GUARANTEES}
        return KafkaProducer(bootstrap_servers=self._bootstrap_servers, **settings)

    def start_bundle(self):
        self._sent: dict[str, list[int]] = {}  # topic -> [records, bytes]
        self._unacked: list[tuple[KafkaMessage, Any]] = []  # (message, its delivery future or the send error)
        self._unacked_bytes = 0

    def process(self, message: KafkaMessage):
        counts = self._sent.setdefault(message.topic, [0, 0])
        counts[0] += 1
        counts[1] += len(message.value)
        self._send(message)
        if self._unacked_bytes >= _MAX_UNACKED_BYTES:
            self._deliver()

    def _send(self, message: KafkaMessage) -> None:
        try:
            self._unacked.append((message, self._producer.send(message.topic, key=message.key, value=message.value)))
        except KafkaError as error:
            self._unacked.append((message, error))
        self._unacked_bytes += len(message.value)

    def _deliver(self) -> None:
        """Waits until every message sent so far is acknowledged, resending
        failed ones with a new producer; raises if some cannot be delivered."""
        for attempt in range(1, self._delivery_attempts + 1):
            self._producer.flush()
            failed = [(message, error) for message, outcome in self._unacked
                      if (error := _delivery_error(outcome)) is not None]
            self._unacked, self._unacked_bytes = [], 0
            if not failed:
                return
            permanent = next((error for _, error in failed if isinstance(error, _UNDELIVERABLE)), None)
            if permanent is not None or attempt == self._delivery_attempts:
                # Failing the bundle makes the runner retry it (or stop the
                # job) before any offset is committed: never a silent loss.
                raise RuntimeError(f"{len(failed)} records were not delivered after {attempt} attempt(s): "
                                   f"{permanent or failed[0][1]!r}")
            _LOG.warning("%d records not delivered (%r); retrying with a new producer", len(failed), failed[0][1])
            time.sleep(min(2 ** attempt, 10))
            # A new producer: a broker that lost its state no longer knows the
            # old one's id and sequence numbers.
            self._producer.close(timeout=5)
            self._producer = self._new_producer()
            for message, _ in failed:
                self._send(message)

    def finish_bundle(self):
        self._deliver()
        for topic, (records, size) in self._sent.items():
            Metrics.counter("wirecopy", f"records_written.{topic}").inc(records)
            Metrics.counter("wirecopy", f"bytes_written.{topic}").inc(size)
            written = self._written.setdefault(topic, [0, 0])
            written[0] += records
            written[1] += size
        if time.monotonic() - self._last_progress_log >= _PROGRESS_LOG_SECONDS:
            self._last_progress_log = time.monotonic()
            _LOG.info("wrote (acknowledged) %s", ", ".join(
                f"{records:,} records, {size / 1e6:,.1f} MB to {topic}" for topic, (records, size) in self._written.items()))

    def teardown(self):
        self._producer.close()


class WriteToKafka(beam.PTransform):
    """Writes `KafkaMessage`s with an idempotent producer, `acks=all`.

    Flushes at the end of every bundle (and within one, whenever 4 MiB are
    unacknowledged) and retries failed deliveries (except
    those no retry can fix) with a new producer, so a bundle (and the input
    offsets its finalizer commits) is complete only once every record is
    acknowledged.
    """

    def __init__(self, bootstrap_servers: str, producer_config: Mapping[str, Any] | None = None,
                 delivery_attempts: int = 5):
        super().__init__()
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        config = dict(producer_config or {})
        check_producer_config(config)
        if delivery_attempts < 1:
            raise ValueError("delivery_attempts must be at least 1")
        self._bootstrap_servers = bootstrap_servers
        self._producer_config = config
        self._delivery_attempts = delivery_attempts

    def expand(self, messages):
        return messages | "Write" >> beam.ParDo(
            _WriteFn(self._bootstrap_servers, self._producer_config, self._delivery_attempts))

    def display_data(self):
        return {
            "bootstrap_servers": self._bootstrap_servers,
            "producer_config": DisplayDataItem(repr(redacted(self._producer_config)), label="producer config"),
        }
