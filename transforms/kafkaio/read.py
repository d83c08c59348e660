"""The reader: a splittable DoFn over partition sets, and `ReadFromKafka`."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Iterator

import apache_beam as beam
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from kafka import TopicPartition
from kafka.errors import KafkaError

from wirecopy.schemas.records import SourceRecord
from wirecopy.transforms.kafkaio.commit import OffsetCommitter
from wirecopy.transforms.kafkaio.plan import PlanReadFn
from wirecopy.transforms.kafkaio.restriction import (
    END_OF_READ,
    Adopt,
    Claim,
    PartitionCursor,
    PartitionSet,
    PartitionSetProvider,
)
from wirecopy.transforms.kafkaio.spec import POLL_TIMEOUT_MS, KafkaReadSpec, ReadStop, TimestampPolicy, redacted

_LOG = logging.getLogger(__name__)

# How long one process() call reads before it checkpoints: the bundle ends, the
# sink flushes and the offsets are committed at this cadence. Time alone bounds
# a bundle (the sink bounds its own memory): each bundle costs the local runner
# ~13 ms, so capping bundles at 5,000 records cost ~8 % of read throughput.
_BUNDLE_SECONDS = 1.0
_MAX_POLL_RECORDS = 5_000
# Records asked of one poll. The bundle deadline is checked between polls, and
# the stages fused after the reader process a poll's records before the next
# one, so the size adapts: a poll's records should take about this long
# downstream. Fast stages get big polls (a poll has a fixed cost: a hop to the
# client's network thread); slow ones get small polls and bundles that still
# end near their deadline, so offsets commit steadily.
_POLL_SECONDS = 0.1
_FIRST_POLL_RECORDS = 500  # kafka-python's own default
_PROGRESS_LOG_SECONDS = 10.0
# How long a streaming reader whose poll returned nothing waits before it
# polls again. Each deferred remainder is a residual that Flink's portable
# runner keeps in checkpointed state (apache/beam#27648), so re-polling at once
# made an idle job's checkpoints grow with every idle bundle: the reader's
# operator grew ~107 KB per checkpoint (10-minute idle soak, checkpoints every
# 10 s, commit 68e038c). With this delay, 2-minute idle soak, same settings
# (benchmarks/flink_soak.py --minutes 2 --every 15 --after-idle 3): +44 KB per
# checkpoint (122 KB at #2, 520 KB at #11): slower, still unbounded. The cost
# is latency: a record sent to a reader idle for 15 s came out after 4.6-7.9 s.
_IDLE_RESUME_SECONDS = 5
_GLOBAL_WINDOWS = (GlobalWindow(),)


@dataclasses.dataclass
class _BundleRead:
    """Where one process() call's read of its restriction's partitions stands."""

    cursors: dict[TopicPartition, PartitionCursor]
    expected: dict[TopicPartition, int] = dataclasses.field(init=False)  # the next offset to read
    epochs: dict[TopicPartition, int] = dataclasses.field(init=False)
    latest: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)  # newest event time, micros
    done: set[TopicPartition] = dataclasses.field(default_factory=set)  # bounded partitions read to their stop
    budget: int | None = None  # records the restriction may still read (`PartitionSet.budget`)
    stopping: bool = False

    def __post_init__(self):
        self.expected = {p: c.offset for p, c in self.cursors.items()}
        self.epochs = {p: c.epoch for p, c in self.cursors.items()}


class LiveReaders:
    """One worker process's reader instances that have their Kafka clients open,
    and how many of them it has told the `live_readers` counter of.

    A reader opens its clients in setup() and closes them in teardown(), and
    Beam drops metric updates made outside a bundle, so neither can count
    itself there: each bundle reports the difference since the process's last
    report (`unreported`). A counter, not a gauge: runners sum counter updates
    over bundles, instances and processes, while a gauge keeps one writer's
    value, and what is wanted is the total over every worker process.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._open = 0
        self._reported = 0

    def opened(self) -> None:
        with self._lock:
            self._open += 1

    def closed(self) -> None:
        with self._lock:
            self._open -= 1

    def count(self) -> int:
        with self._lock:
            return self._open

    def unreported(self) -> int:
        """The change since the last call (readers opened minus closed): add it to the counter in a bundle."""
        with self._lock:
            change, self._reported = self._open - self._reported, self._open
            return change


class ReadFn(beam.DoFn):
    """Reads one restriction's partitions per process() call, for about a second, then checkpoints.

    `max_records` is kept by the restrictions (see `plan.read_plan` and
    `PartitionSet.budget`), not by reader instances: a run reads that many
    records however many instances and bundles the runner uses, and a
    restore from a checkpoint goes on with what its restrictions have left.

    Metrics (namespace `wirecopy`): `records_read.TOPIC`, `bytes_read.TOPIC`,
    `log_resets.TOPIC`, gauges `backlog.TOPIC.PARTITION`, and the counter
    `live_readers.TOPIC`: reader instances with their Kafka clients open (a
    Beam DoFn instance lives from setup() to teardown(); on Flink a bundle's
    instance stays until its checkpoint's commit, so several exist at once),
    summed over every worker process (see `LiveReaders`). A teardown is
    counted at the next bundle of a reader in the same process; a process
    whose last reader is torn down keeps its last count (a job ending or
    failing).
    """

    def __init__(self, spec: KafkaReadSpec, stop: ReadStop | None):
        self._spec = spec
        self._stop = stop
        self._live_readers_handle = shared.Shared()  # one `LiveReaders` per worker process, as `ReadStop`'s event

    def setup(self):
        spec = self._spec
        self._consumer = spec.new_consumer(in_group=False)  # fetches only; offsets go through the committer
        self._committer = OffsetCommitter(spec)
        self._live_readers = self._live_readers_handle.acquire(LiveReaders)  # held: Shared keeps weak references
        self._live_readers.opened()
        self._records_read = 0  # by this instance, for its progress line
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
        self._live_readers_counter = Metrics.counter("wirecopy", f"live_readers.{spec.topic}")

    def _should_stop(self) -> bool:
        spec = self._spec
        if self._stop is not None and self._stop.requested():
            return True
        return (
            spec.max_read_time_s is not None
            and self._started_at is not None
            and time.monotonic() - self._started_at >= spec.max_read_time_s
        )

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

    def _adopt_new_partitions(self, tracker, restriction: PartitionSet) -> None:
        now = time.monotonic()
        if now - self._last_discovery < self._spec.partition_discovery_interval_s:
            return
        self._last_discovery = now
        known = {c.partition for c in restriction.cursors}
        numbers = self._consumer.partitions_for_topic(restriction.topic) or set()
        new = [
            TopicPartition(restriction.topic, n)
            for n in sorted(numbers)
            if n >= restriction.discover_from and n not in known
        ]
        starts = self._consumer.beginning_offsets(new) if new else {}
        for partition in new:
            if tracker.try_claim(Adopt(partition.partition, starts[partition])):
                _LOG.info(
                    "new partition %s[%d]: reading it from offset %d",
                    partition.topic,
                    partition.partition,
                    starts[partition],
                )

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
            batches = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self._poll_records)
            self._last_poll = (time.monotonic(), sum(len(records) for records in batches.values()))
            return batches
        except KafkaError as error:
            if not error.retriable:
                raise
            _LOG.warning("Kafka unavailable, retrying: %s", error)
            time.sleep(POLL_TIMEOUT_MS / 1000)
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
            for p, backlog in backlogs.items()
        )
        rate = self._records_read / max(now - (self._started_at or now), 1e-9)
        _LOG.info(
            "read %d records (%.0f/s); %s; live readers in this process %d",
            self._records_read,
            rate,
            described,
            self._live_readers.count(),
        )

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        plan: PartitionSet,
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(PartitionSetProvider()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if self._started_at is None:
            self._started_at = time.monotonic()
        opened_or_closed = self._live_readers.unreported()
        if opened_or_closed:
            self._live_readers_counter.inc(opened_or_closed)
        restriction = tracker.current_restriction()
        if self._should_stop() or restriction.budget == 0:
            tracker.try_claim(END_OF_READ)
            return
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
        bundle = _BundleRead(cursors, budget=restriction.budget)
        deadline = time.monotonic() + _BUNDLE_SECONDS
        while True:
            batches = self._poll()
            yield from self._read_batches(batches, bundle, tracker, policy)
            if bundle.stopping:
                # Claiming the end finishes the restriction; what was not read
                # is not committed, so the next run starts there.
                tracker.try_claim(END_OF_READ)
                break
            positions = self._positions(cursors)
            if positions is None:
                continue
            self._follow_shrunk_logs(bundle, tracker)
            self._claim_bounded_ends(bundle, tracker, positions)
            if len(bundle.done) == len(cursors) and restriction.discover_from is None:
                break
            if self._should_stop():
                tracker.try_claim(END_OF_READ)
                break
            idle = not batches and self._spec.streaming
            if time.monotonic() >= deadline or idle:
                # Checkpoint: end this bundle so the sink flushes and the
                # offsets commit, and let other restrictions have a turn. An
                # idle reader resumes only after a delay (see _IDLE_RESUME_SECONDS).
                self._advance_watermark(watermark, self._watermark(policy, cursors, bundle.latest, positions))
                tracker.defer_remainder(Duration(seconds=_IDLE_RESUME_SECONDS) if idle else None)
                break
        self._next_offsets.update(bundle.expected)
        self._log_progress(bundle.expected)
        advanced = {
            p: bundle.expected[p] for p, c in cursors.items() if (bundle.epochs[p], bundle.expected[p]) != c.position
        }
        if advanced:
            finalizer.register(lambda: self._committer.commit(advanced))

    def _read_batches(self, batches: dict, bundle: _BundleRead, tracker, policy: TimestampPolicy) -> Iterator:
        """One poll's records, claimed batch by batch, as timestamped values."""
        for partition, records in batches.items():
            if partition in bundle.done:
                continue
            if self._should_stop():
                bundle.stopping = True
                return
            yield from self._read_batch(partition, records, bundle, tracker, policy)
            if bundle.stopping:
                return

    def _read_batch(
        self, partition: TopicPartition, records: list, bundle: _BundleRead, tracker, policy: TimestampPolicy
    ) -> Iterator:
        if records[0].offset < bundle.expected[partition]:
            # The broker's log restarted below our position (it lost
            # its data): go on from the new log in a new epoch.
            bundle.epochs[partition] += 1
            self._resets.inc()
            _LOG.warning(
                "%s restarted at offset %d, below our position %d: reading on from there",
                partition,
                records[0].offset,
                bundle.expected[partition],
            )
        stop = bundle.cursors[partition].stop
        if stop is not None and records[-1].offset >= stop:
            records = [record for record in records if record.offset < stop]
        if bundle.budget is not None and len(records) >= bundle.budget:
            # The budget is spent: claiming the end of the read (the caller) leaves no residual.
            records, bundle.stopping = records[: bundle.budget], True
        # One claim per batch: claiming an offset claims every offset before it.
        if not records:
            return
        if not tracker.try_claim(
            Claim(partition.partition, bundle.epochs[partition], records[-1].offset, len(records))
        ):
            return
        bundle.expected[partition] = records[-1].offset + 1
        if bundle.budget is not None:
            bundle.budget -= len(records)
        self._records_read += len(records)
        self._records.inc(len(records))
        newest = bundle.latest.get(partition, -1 << 62)
        size = 0
        event_micros: int | None = None
        event_time = Timestamp(0)  # replaced at the first record: no record's time is None
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
        bundle.latest[partition] = newest
        self._bytes.inc(size)

    def _positions(self, cursors: dict[TopicPartition, PartitionCursor]) -> dict[TopicPartition, int] | None:
        """The consumer's position in each partition, or None when Kafka is unavailable (to be retried)."""
        try:
            return {p: self._consumer.position(p) for p in cursors}
        except KafkaError as error:
            # position() may validate offsets with the broker (after a
            # reconnect): a broker that is down is retried, as a poll is.
            if not error.retriable:
                raise
            _LOG.warning("Kafka unavailable, retrying: %s", error)
            time.sleep(POLL_TIMEOUT_MS / 1000)
            return None

    def _follow_shrunk_logs(self, bundle: _BundleRead, tracker) -> None:
        for partition in bundle.cursors:
            highwater = self._consumer.highwater(partition)
            if highwater is not None and highwater < bundle.expected[partition]:
                # The log now ends below what we have read: the broker
                # lost or truncated it. Read the new log from its start,
                # in a new epoch; claiming the offset before that start
                # records the rewind in the restriction itself.
                start = self._consumer.beginning_offsets([partition])[partition]
                _LOG.warning(
                    "%s now ends at %d, below our position %d: reading it again from offset %d",
                    partition,
                    highwater,
                    bundle.expected[partition],
                    start,
                )
                bundle.epochs[partition] += 1
                self._resets.inc()
                tracker.try_claim(Claim(partition.partition, bundle.epochs[partition], start - 1))
                bundle.expected[partition] = start
                self._consumer.seek(partition, start)

    @staticmethod
    def _claim_bounded_ends(bundle: _BundleRead, tracker, positions: dict[TopicPartition, int]) -> None:
        for partition, cursor in bundle.cursors.items():
            if partition not in bundle.done and cursor.stop is not None and positions[partition] >= cursor.stop:
                # Bounded end reached (offsets may have gaps): claiming the stop finishes it.
                tracker.try_claim(Claim(partition.partition, bundle.epochs[partition], cursor.stop))
                bundle.done.add(partition)

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
        self._live_readers.closed()


def _source_record(record) -> SourceRecord:
    # Positional: the reader builds one per record, and keywords cost twice as much.
    headers = tuple((name, value or b"") for name, value in record.headers) if record.headers else ()
    return SourceRecord(
        record.topic, record.partition, record.offset, record.value or b"", record.key, record.timestamp, headers
    )


class ReadFromKafka(beam.PTransform):
    """Reads a topic as `SourceRecord`s (topic, partition, offset, timestamp,
    key, headers and value), timestamped by the spec's timestamp policy.

    `stop`: a `ReadStop` that ends a streaming read cleanly when requested
    (without one, it ends at the spec's `max_records` or `max_read_time_s`).

    `max_records` N is the read's, not a reader's: a run reads N records
    (fewer if a bounded read finds fewer, or offsets have gaps) however many
    reader instances the runner uses. When the topic holds N records past the
    start positions (always, bounded), they are shared among the partitions
    in proportion to their backlogs, as stop offsets, and partitions added
    later are not read; streaming, when it holds fewer, one restriction reads
    every partition (and those added) until N, records not yet produced
    included. See `plan.read_plan`.

    Example::

        records = pipeline | ReadFromKafka(KafkaReadSpec("localhost:9092", "articles", "wirecopy", streaming=True))
    """

    def __init__(self, spec: KafkaReadSpec, stop: ReadStop | None = None):
        super().__init__()
        self._spec = spec
        self._stop = stop

    def expand(self, pbegin):
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "PlanRead" >> beam.ParDo(PlanReadFn(self._spec))
            | "ReadPartitions" >> beam.ParDo(ReadFn(self._spec, self._stop))
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
