"""Integration tests of the Kafka source and sink against real brokers: Tansu and Apache Kafka, each test on both."""

import datetime as dt
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.utils.timestamp import Timestamp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from apache_kafka import on_both_brokers, recent_record_time_ms
from wirecopy.pipelines.local_broker import committed_offsets, produce, read_topic
from wirecopy.transforms.kafkaio import (
    KafkaMessage,
    KafkaReadSpec,
    PartitionCursor,
    PartitionSet,
    PartitionSetTracker,
    ReadFromKafka,
    ReadStop,
    StartPosition,
    TimestampKind,
    TimestampPolicy,
    WriteToKafka,
    group_lag,
    high_watermarks,
)
from wirecopy.transforms.kafkaio.read import ReadFn
from wirecopy.transforms.kafkaio.write import MAX_UNACKED_BYTES

pytestmark = pytest.mark.broker


def copy_topic(
    spec: KafkaReadSpec, output_topic: str, producer_config=None, stop: ReadStop | None = None
) -> dict[str, int]:
    """Run reader → sink on the local runner, the way the real pipeline is fused; the run's counters."""
    options = PipelineOptions(streaming=spec.streaming)
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        (
            pipeline
            | ReadFromKafka(spec, stop)
            | beam.Map(lambda record: KafkaMessage(output_topic, record.key, record.value))
            | WriteToKafka(spec.bootstrap_servers, producer_config)
        )
    return {m.key.metric.name: m.committed for m in pipeline.result.metrics().query()["counters"]}


def committed(broker, topic: str, group: str) -> dict[int, int | None]:
    return committed_offsets(broker.bootstrap_servers, topic, group)


def produce_numbered(broker, topic: str, start: int, count: int) -> list[bytes]:
    keys = [str(n).encode() for n in range(start, start + count)]
    produce(broker.bootstrap_servers, topic, [b"value-" + key for key in keys], keys)
    return keys


@on_both_brokers
def test_high_watermarks_are_exact_after_batched_produce(broker, topic_name):
    topic = topic_name("in")
    broker.create_topics([topic], partitions=3)
    produce_numbered(broker, topic, 0, 3000)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    partitions = [TopicPartition(topic, n) for n in range(3)]
    highs = high_watermarks(consumer, partitions)
    consumer.close()
    assert sum(highs.values()) == 3000


@on_both_brokers
def test_bounded_read_copies_everything_commits_and_resumes(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=3)
    broker.create_topics([sink])
    first = produce_numbered(broker, source, 0, 1500)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group)

    copy_topic(spec, sink)
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(first)
    offsets = committed(broker, source, group)
    assert sum(offsets.values()) == 1500

    second = produce_numbered(broker, source, 1500, 300)
    copy_topic(spec, sink)
    keys = [r.key for r in read_topic(broker.bootstrap_servers, sink)]
    assert sorted(keys) == sorted(first + second), "the second run resumes at the committed offsets, no re-reads"
    assert sum(committed(broker, source, group).values()) == 1800


@on_both_brokers
def test_bounded_reads_with_max_records_read_exactly_that_many_and_the_next_run_goes_on(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=3)
    broker.create_topics([sink])
    keys = produce_numbered(broker, source, 0, 1500)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group, max_records=700)
    counters = copy_topic(spec, sink)
    assert len(read_topic(broker.bootstrap_servers, sink)) == 700
    assert sum(committed(broker, source, group).values()) == 700
    assert counters[f"records_read.{source}"] == 700
    # The local runner reads every restriction with one reader instance, kept from the first bundle to the
    # last (its teardown comes after the run's last bundle, so it is never subtracted).
    assert counters[f"live_readers.{source}"] == 1
    copy_topic(spec, sink)
    copy_topic(spec, sink)  # 100 left: the bounded read stops at the high watermark
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(keys), "no gap, no re-read"


@on_both_brokers
def test_streaming_read_sees_records_produced_while_it_runs(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=2)
    broker.create_topics([sink])
    before = produce_numbered(broker, source, 0, 200)
    # max_read_time_s only ends a read that never reaches max_records, which the assertions then tell.
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group, streaming=True, max_records=500, max_read_time_s=240)
    pipeline = threading.Thread(target=copy_topic, args=(spec, sink))
    pipeline.start()
    # "During": once the records from before are copied, so the read is running when the rest arrive.
    deadline = time.monotonic() + 120
    while len(read_topic(broker.bootstrap_servers, sink)) < len(before):
        assert pipeline.is_alive(), "the streaming read ended before max_records"
        assert time.monotonic() < deadline, "the records produced before the read were not copied within 120 s"
        time.sleep(0.5)
    during = produce_numbered(broker, source, 200, 300)
    pipeline.join(timeout=240)
    assert not pipeline.is_alive(), "the streaming read did not stop at max_records"
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(before + during)
    assert sum(committed(broker, source, group).values()) == 500


@on_both_brokers
def test_stop_request_ends_a_streaming_read_cleanly_and_commits(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=2)
    broker.create_topics([sink])
    keys = produce_numbered(broker, source, 0, 400)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group, streaming=True)
    stop = ReadStop()
    pipeline = threading.Thread(target=copy_topic, args=(spec, sink), kwargs={"stop": stop})
    pipeline.start()
    deadline = time.monotonic() + 60
    while len(read_topic(broker.bootstrap_servers, sink)) < 400 and time.monotonic() < deadline:
        time.sleep(0.5)
    stop.request()
    pipeline.join(timeout=60)
    assert not pipeline.is_alive(), "the streaming read did not stop when asked"
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(keys)
    assert sum(committed(broker, source, group).values()) == 400


@on_both_brokers
def test_undeliverable_output_fails_the_run_and_commits_nothing(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source])
    broker.create_topics([sink])
    produce_numbered(broker, source, 0, 50)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group)
    with pytest.raises(Exception, match="MessageSizeTooLarge|too large|larger than"):
        # Every record is bigger than the producer may send: delivery fails.
        copy_topic(spec, sink, producer_config={"max_request_size": 16})
    assert committed(broker, source, group) == {0: None}


@on_both_brokers
def test_a_bundle_over_the_sinks_unacknowledged_bound_is_delivered_whole(broker, topic_name):
    sink = topic_name("out")
    broker.create_topics([sink], partitions=3)
    value = b"x" * 2048
    count = 2 * MAX_UNACKED_BYTES // len(value) + 7  # two flushes inside the bundle, then the rest
    keys = [str(n).encode() for n in range(count)]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        (
            pipeline
            | beam.Create(keys)  # one bundle on the local runner
            | beam.Map(lambda key: KafkaMessage(sink, key, value))
            | WriteToKafka(broker.bootstrap_servers)
        )
    assert sorted(record.key for record in read_topic(broker.bootstrap_servers, sink)) == sorted(keys)


@on_both_brokers
def test_missing_topic_is_a_clear_error(broker, topic_name):
    spec = KafkaReadSpec(broker.bootstrap_servers, topic_name("absent"), topic_name("group"))
    with pytest.raises(Exception, match="does not exist"):
        copy_topic(spec, topic_name("out"))


def test_spec_validation():
    with pytest.raises(ValueError, match="group_id"):
        KafkaReadSpec("localhost:9092", "t", "")
    with pytest.raises(ValueError, match="max_records"):
        KafkaReadSpec("localhost:9092", "t", "g", max_records=0)
    with pytest.raises(ValueError, match="acks=all"):
        WriteToKafka("localhost:9092", {"acks": 1, "linger_ms": 5})
    WriteToKafka("localhost:9092", {"acks": "all", "linger_ms": 5})  # restating a guarantee is fine


def read_with_timestamps(broker, spec: KafkaReadSpec, sink: str) -> list[tuple[bytes, int]]:
    """(key, event time in ms) of every record the source emits, carried through the sink topic `sink`."""
    broker.create_topics([sink])
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions()) as pipeline:
        (
            pipeline
            | ReadFromKafka(spec)
            | beam.Map(
                lambda record, ts=beam.DoFn.TimestampParam: KafkaMessage(
                    sink, record.key, str(ts.micros // 1000).encode()
                )
            )
            | WriteToKafka(spec.bootstrap_servers)
        )
    return [(record.key, int(record.value)) for record in read_topic(broker.bootstrap_servers, sink)]


def produce_timed(broker, topic: str, count: int, first_ms: int, values=None) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for n in range(count):
        producer.send(
            topic, key=str(n).encode(), value=values[n] if values else b"{}", timestamp_ms=first_ms + n * 1000
        )
    producer.flush()
    producer.close()


@on_both_brokers
def test_start_positions(broker, topic_name):
    topic = topic_name("in")
    broker.create_topics([topic])
    first_ms = recent_record_time_ms()
    produce_timed(broker, topic, 30, first_ms)

    def keys(spec):
        return sorted(int(key) for key, _ in read_with_timestamps(broker, spec, topic_name("out")))

    assert keys(
        KafkaReadSpec(broker.bootstrap_servers, topic, topic_name("g"), start_position=StartPosition.EARLIEST)
    ) == list(range(30))
    assert (
        keys(KafkaReadSpec(broker.bootstrap_servers, topic, topic_name("g"), start_position=StartPosition.LATEST)) == []
    )
    from_time = dt.datetime.fromtimestamp((first_ms + 20_000) / 1000, dt.timezone.utc)
    assert keys(KafkaReadSpec(broker.bootstrap_servers, topic, topic_name("g"), start_time=from_time)) == list(
        range(20, 30)
    )

    group = topic_name("g")
    assert keys(KafkaReadSpec(broker.bootstrap_servers, topic, group)) == list(range(30))
    assert keys(KafkaReadSpec(broker.bootstrap_servers, topic, group)) == [], "the group resumes after its commit"


@on_both_brokers
def test_timestamp_policies(broker, topic_name):
    topic = topic_name("in")
    broker.create_topics([topic])
    first_ms = recent_record_time_ms()
    values = [b'{"id": "a", "published_at": "2024-05-01T12:00:00+02:00"}', b"not json", b'{"id": "c"}']
    produce_timed(broker, topic, 3, first_ms, values)

    def read(kind):
        spec = KafkaReadSpec(broker.bootstrap_servers, topic, topic_name("g"), timestamp_policy=TimestampPolicy(kind))
        return read_with_timestamps(broker, spec, topic_name("out"))

    assert sorted(read(TimestampKind.CREATE_TIME)) == [
        (b"0", first_ms),
        (b"1", first_ms + 1000),
        (b"2", first_ms + 2000),
    ]
    published = dict(read(TimestampKind.PUBLISHED_AT))
    assert published[b"0"] == int(dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert published[b"1"] == first_ms + 1000 and published[b"2"] == first_ms + 2000, (
        "record time when published_at is absent"
    )
    before = time.time() * 1000
    assert all(ts >= before for _, ts in read(TimestampKind.PROCESSING_TIME))


class _Finalizer:
    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        self.callbacks.append(callback)


class ReaderOutsideARunner:
    """The reader's process() called directly on a real broker, the way a runner calls it."""

    def __init__(self, spec: KafkaReadSpec):
        self._reader = ReadFn(spec, stop=None)
        self._reader.setup()

    def process(self, restriction: PartitionSet, estimator: ManualWatermarkEstimator) -> list:
        tracker = RestrictionTrackerView(ThreadsafeRestrictionTracker(PartitionSetTracker(restriction)))
        return list(self._reader.process(restriction, finalizer=_Finalizer(), tracker=tracker, watermark=estimator))

    def process_until_news(
        self, restriction: PartitionSet, estimator: ManualWatermarkEstimator, resumptions: int = 100
    ) -> list:
        """process() until a bundle outputs records or moves the watermark, as a runner resumes a streaming
        read whose bundle ended idle. A first bundle can end before the broker's first fetch response:
        Apache Kafka holds a fetch of an empty partition up to fetch.max.wait.ms (kafka-python: 500 ms),
        longer than the reader's idle poll. Nothing was read, so each resumption starts at the same cursor."""
        before = estimator.current_watermark()
        for _ in range(resumptions):
            outputs = self.process(restriction, estimator)
            if outputs or estimator.current_watermark() != before:
                return outputs
        raise AssertionError(f"{resumptions} bundles read nothing and left the watermark at {before}")

    def close(self):
        self._reader.teardown()


@on_both_brokers
def test_idle_partition_watermark_advances_and_never_goes_back(broker, topic_name):
    topic = topic_name("in")
    broker.create_topics([topic], partitions=2)
    hour_ago_ms = int((time.time() - 3600) * 1000)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for n in range(5):
        producer.send(topic, key=b"%d" % n, value=b"{}", partition=0, timestamp_ms=hour_ago_ms + n)
    producer.flush()
    spec = KafkaReadSpec(broker.bootstrap_servers, topic, topic_name("g"), streaming=True)

    reader = ReaderOutsideARunner(spec)
    idle = ManualWatermarkEstimator(None)
    assert reader.process_until_news(PartitionSet(topic, (PartitionCursor(1, 0),)), idle) == []
    assert idle.current_watermark() > Timestamp.now() - 60, "an idle partition's watermark follows the clock"

    busy = ManualWatermarkEstimator(Timestamp.now())
    outputs = reader.process_until_news(PartitionSet(topic, (PartitionCursor(0, 0),)), busy)
    reader.close()
    assert len(outputs) == 5 and all(o.timestamp.micros // 1000 < hour_ago_ms + 5 for o in outputs)
    assert busy.current_watermark() > Timestamp.now() - 60, "old records never move the watermark backwards"


@on_both_brokers
def test_client_config_reaches_the_clients_and_secrets_stay_out_of_sight(broker, topic_name, caplog):
    source, sink = topic_name("in"), topic_name("out")
    broker.create_topics([source])
    broker.create_topics([sink])
    produce_numbered(broker, source, 0, 20)
    secret = "hunter2-do-not-log"
    spec = KafkaReadSpec(
        broker.bootstrap_servers,
        source,
        topic_name("g"),
        consumer_config={"client_id": "wirecopy-test-reader", "fetch_max_bytes": 1024, "sasl_plain_password": secret},
    )
    copy_topic(spec, sink, producer_config={"client_id": "wirecopy-test-writer", "sasl_plain_password": secret})
    assert len(read_topic(broker.bootstrap_servers, sink)) == 20, "tiny fetches still read everything"
    displayed = str(ReadFromKafka(spec).display_data()) + str(
        WriteToKafka(broker.bootstrap_servers, {"sasl_plain_password": secret}).display_data()
    )
    assert "wirecopy-test-reader" in displayed and secret not in displayed
    assert secret not in repr(spec) and secret not in caplog.text
    with pytest.raises(ValueError, match="unknown kafka-python consumer settings: no_such_setting"):
        KafkaReadSpec(broker.bootstrap_servers, source, "g", consumer_config={"no_such_setting": 1})


@on_both_brokers
def test_group_lag_is_what_the_group_has_not_committed(broker, topic_name):
    topic, group = topic_name("in"), topic_name("group")
    broker.create_topics([topic], partitions=2)
    produce(broker.bootstrap_servers, topic, [b"a"] * 5, [b"k"] * 5)  # one partition gets all five
    spec = KafkaReadSpec(broker.bootstrap_servers, topic, group)
    assert sorted(group_lag(spec).values()) == [0, 5], "never committed: all of it"
    committer = spec.new_consumer()
    loaded = next(n for n, lag in group_lag(spec).items() if lag == 5)
    committer.commit({TopicPartition(topic, loaded): OffsetAndMetadata(3, "", -1)})
    committer.close()
    assert group_lag(spec)[loaded] == 2
