"""Kafka source and sink in pure Python, on kafka-python.

`ReadFromKafka` is a splittable DoFn with one `OffsetRange` restriction per
topic partition. Bounded, it reads from the consumer group's committed offsets
(else the earliest) up to the high watermark taken at start; streaming, it keeps
reading until `max_records`, `max_read_time` or a stop request (SIGINT/SIGTERM
in the CLI). Offsets are committed to the consumer group by a bundle
finalizer, which the runner calls only once the bundle's outputs are durable:
the sink (`WriteToKafka`) is fused into the same bundle and flushes in
`finish_bundle`, so a committed offset always means the outputs are written
(at-least-once).

Kafka clients are created in `setup()`: they hold sockets and threads and
cannot be pickled with the DoFn.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Timestamp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from schemas.records import SourceRecord

_LOG = logging.getLogger(__name__)

# A streaming restriction has no end; OffsetRange needs a number.
_UNBOUNDED = sys.maxsize
# How long one process() call reads before it checkpoints: the bundle ends, the
# sink flushes and the offsets are committed at this cadence.
_BUNDLE_SECONDS = 1.0
_BUNDLE_RECORDS = 5_000
_POLL_TIMEOUT_MS = 200
_PROGRESS_LOG_SECONDS = 10.0

# Signals are process-wide, so the stop request is too: the CLI's SIGINT and
# SIGTERM handlers set it, every reader in the process sees it at its next poll,
# ends its restrictions, and the pipeline finishes its bundles and commits.
_stop_requested = threading.Event()


def request_stop() -> None:
    """Ask every Kafka reader in this process to stop cleanly."""
    _stop_requested.set()


@dataclasses.dataclass(frozen=True)
class KafkaReadSpec:
    """Everything the source needs; immutable, so it can ship with the DoFns."""

    bootstrap_servers: str
    topic: str
    group_id: str
    streaming: bool = False
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

    def new_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.consumer_config,
        )


@dataclasses.dataclass(frozen=True)
class PartitionRead:
    """One partition to read, from `start_offset` to `stop_offset` (None: no end)."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int | None


@dataclasses.dataclass(frozen=True)
class KafkaMessage:
    """One record for the sink to write."""

    topic: str
    key: bytes | None
    value: bytes


def committed_or_earliest(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where a consumer group resumes: its committed offset, else the earliest one."""
    earliest = consumer.beginning_offsets(partitions)
    starts = {}
    for partition in partitions:
        committed = consumer.committed(partition)
        starts[partition] = earliest[partition] if committed is None else max(committed, earliest[partition])
    return starts


def high_watermarks(consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, now.

    ListOffsets (`end_offsets`) is the protocol's answer, but some brokers
    (Tansu) under-report it after multi-record batches; the high watermark in a
    fetch response is right everywhere, so this re-fetches each partition's
    last batch and takes the larger of the two.
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
    return highs


class _ListPartitionsFn(beam.DoFn):
    """Turns the impulse into one `PartitionRead` per partition of the topic."""

    def __init__(self, spec: KafkaReadSpec):
        self._spec = spec

    def setup(self):
        self._consumer = self._spec.new_consumer()

    def process(self, _impulse) -> Iterable[PartitionRead]:
        spec = self._spec
        numbers = self._consumer.partitions_for_topic(spec.topic)
        if not numbers:
            raise ValueError(f"topic {spec.topic!r} does not exist on {spec.bootstrap_servers}")
        partitions = [TopicPartition(spec.topic, n) for n in sorted(numbers)]
        starts = committed_or_earliest(self._consumer, partitions)
        stops = {p: None for p in partitions} if spec.streaming else high_watermarks(self._consumer, partitions)
        for partition in partitions:
            stop = stops[partition]
            _LOG.info("reading %s[%d] from offset %d to %s", partition.topic, partition.partition,
                      starts[partition], "the end of time" if stop is None else stop)
            yield PartitionRead(partition.topic, partition.partition, starts[partition], stop)

    def teardown(self):
        self._consumer.close()


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, partition: PartitionRead) -> OffsetRange:
        stop = _UNBOUNDED if partition.stop_offset is None else max(partition.stop_offset, partition.start_offset)
        return OffsetRange(partition.start_offset, stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, partition: PartitionRead, restriction: OffsetRange) -> int:
        return 0 if restriction.stop == _UNBOUNDED else restriction.size()

    def truncate(self, partition: PartitionRead, restriction: OffsetRange):
        # On drain, stop reading: what was not read is not committed and the
        # next run starts there.
        return None


class _ReadPartitionsFn(beam.DoFn):
    def __init__(self, spec: KafkaReadSpec):
        self._spec = spec
        self._records = Metrics.counter("wirecopy", "kafka_records_read")
        self._bytes = Metrics.counter("wirecopy", "kafka_bytes_read")

    def setup(self):
        self._consumer = self._spec.new_consumer()
        # kafka-python clients are not thread-safe; a runner may call the
        # finalizer (commit) from another thread than process() (poll).
        self._consumer_lock = threading.Lock()
        self._records_read = 0
        self._started_at: float | None = None
        self._last_progress_log = time.monotonic()

    def _should_stop(self) -> bool:
        spec = self._spec
        if _stop_requested.is_set():
            return True
        if spec.max_records is not None and self._records_read >= spec.max_records:
            return True
        return spec.max_read_time_s is not None and time.monotonic() - self._started_at >= spec.max_read_time_s

    def _commit(self, partition: TopicPartition, next_offset: int) -> None:
        try:
            with self._consumer_lock:
                self._consumer.commit({partition: OffsetAndMetadata(next_offset, "", -1)})
        except KafkaError as error:
            # At-least-once still holds: the next run re-reads from the last
            # offset that did commit.
            _LOG.warning("could not commit %s at %d: %s", partition, next_offset, error)

    def _log_progress(self, partition: TopicPartition, position: int) -> None:
        now = time.monotonic()
        if now - self._last_progress_log < _PROGRESS_LOG_SECONDS:
            return
        self._last_progress_log = now
        highwater = self._consumer.highwater(partition)
        backlog = "?" if highwater is None else max(highwater - position, 0)
        rate = self._records_read / max(now - self._started_at, 1e-9)
        _LOG.info("read %d records (%.0f/s); %s[%d] at offset %d, backlog %s",
                  self._records_read, rate, partition.topic, partition.partition, position, backlog)

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        partition: PartitionRead,
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if self._started_at is None:
            self._started_at = time.monotonic()
        restriction = tracker.current_restriction()
        topic_partition = TopicPartition(partition.topic, partition.partition)
        if self._should_stop():
            tracker.try_claim(restriction.stop)
            return
        with self._consumer_lock:
            self._consumer.assign([topic_partition])
            self._consumer.seek(topic_partition, restriction.start)
        next_offset = restriction.start
        deadline = time.monotonic() + _BUNDLE_SECONDS
        claimed = 0
        while True:
            with self._consumer_lock:
                batch = self._consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=500).get(topic_partition, [])
                position = self._consumer.position(topic_partition)
            for record in batch:
                if self._should_stop():
                    # Claiming the end finishes the restriction; what was not
                    # read is not committed, so the next run starts there.
                    tracker.try_claim(restriction.stop)
                    break
                if not tracker.try_claim(record.offset):
                    break  # past the bounded end: the tracker is done
                next_offset = record.offset + 1
                claimed += 1
                self._records_read += 1
                self._records.inc()
                self._bytes.inc(len(record.value or b""))
                yield beam.window.TimestampedValue(_source_record(record), _event_time(record))
            else:
                if position >= restriction.stop or self._should_stop():
                    # Bounded end reached (offsets may have gaps), or asked to stop.
                    tracker.try_claim(restriction.stop)
                elif claimed < _BUNDLE_RECORDS and time.monotonic() < deadline and (batch or not self._spec.streaming):
                    continue
                else:
                    # Checkpoint: end this bundle so the sink flushes and the
                    # offsets commit, and let other partitions have a turn.
                    watermark.set_watermark(_watermark_after(watermark.current_watermark(), batch))
                    tracker.defer_remainder()
            break
        self._log_progress(topic_partition, next_offset)
        if next_offset > restriction.start:
            finalizer.register(lambda: self._commit(topic_partition, next_offset))

    def teardown(self):
        self._consumer.close()


def _source_record(record) -> SourceRecord:
    return SourceRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=record.value or b"",
        key=record.key,
        timestamp_ms=record.timestamp,
        headers=tuple((name, value or b"") for name, value in record.headers or ()),
    )


def _event_time(record) -> Timestamp:
    # Records from old clients may carry no timestamp (-1).
    return Timestamp.now() if record.timestamp < 0 else Timestamp(micros=record.timestamp * 1000)


def _watermark_after(current: Timestamp | None, batch) -> Timestamp:
    """Never backwards; idle partitions advance to now so they do not hold the pipeline."""
    candidate = Timestamp.now() if not batch else min(_event_time(r) for r in batch)
    return candidate if current is None or candidate > current else current


class ReadFromKafka(beam.PTransform):
    """Reads a topic as `SourceRecord`s, timestamped with the record's timestamp."""

    def __init__(self, spec: KafkaReadSpec):
        super().__init__()
        self._spec = spec

    def expand(self, pbegin):
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "ListPartitions" >> beam.ParDo(_ListPartitionsFn(self._spec))
            | "ReadPartitions" >> beam.ParDo(_ReadPartitionsFn(self._spec))
        )


class _WriteFn(beam.DoFn):
    def __init__(self, bootstrap_servers: str, producer_config: Mapping[str, Any]):
        self._bootstrap_servers = bootstrap_servers
        self._producer_config = producer_config
        self._written = Metrics.counter("wirecopy", "kafka_records_written")

    def setup(self):
        self._producer = KafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            batch_size=256 * 1024,
            **self._producer_config,
        )

    def start_bundle(self):
        self._pending = []

    def process(self, message: KafkaMessage):
        self._pending.append(self._producer.send(message.topic, key=message.key, value=message.value))

    def finish_bundle(self):
        self._producer.flush()
        failures = [future.exception for future in self._pending if future.failed()]
        written = len(self._pending) - len(failures)
        self._pending = []
        self._written.inc(written)
        if failures:
            # Failing the bundle makes the runner retry it (or stop the job)
            # before any offset is committed: never a silent loss.
            raise RuntimeError(f"{len(failures)} of {written + len(failures)} records were not delivered: {failures[0]!r}")

    def teardown(self):
        self._producer.close()


class WriteToKafka(beam.PTransform):
    """Writes `KafkaMessage`s with an idempotent producer, `acks=all`.

    Flushes at the end of every bundle, so a bundle (and the input offsets its
    finalizer commits) is complete only once every record is acknowledged.
    """

    def __init__(self, bootstrap_servers: str, producer_config: Mapping[str, Any] | None = None):
        super().__init__()
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers is required")
        self._bootstrap_servers = bootstrap_servers
        self._producer_config = dict(producer_config or {})

    def expand(self, messages):
        return messages | "Write" >> beam.ParDo(_WriteFn(self._bootstrap_servers, self._producer_config))
