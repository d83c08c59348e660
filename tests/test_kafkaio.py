"""Integration tests of the Kafka source and sink against a real broker (Tansu)."""

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.options.pipeline_options import PipelineOptions
from kafka import KafkaConsumer, TopicPartition

from pipelines.local_broker import produce, read_topic
from transforms import kafkaio
from transforms.kafkaio import KafkaMessage, KafkaReadSpec, ReadFromKafka, WriteToKafka, high_watermarks

pytestmark = pytest.mark.broker


@pytest.fixture(autouse=True)
def no_pending_stop_request():
    kafkaio._stop_requested.clear()
    yield
    kafkaio._stop_requested.clear()


def copy_topic(spec: KafkaReadSpec, output_topic: str, producer_config=None) -> None:
    """Run reader → sink on the local runner, the way the real pipeline is fused."""
    options = PipelineOptions(streaming=spec.streaming)
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        (pipeline
         | ReadFromKafka(spec)
         | beam.Map(lambda record: KafkaMessage(output_topic, record.key, record.value))
         | WriteToKafka(spec.bootstrap_servers, producer_config))


def committed(broker, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return {n: consumer.committed(TopicPartition(topic, n)) for n in sorted(consumer.partitions_for_topic(topic))}
    finally:
        consumer.close()


def produce_numbered(broker, topic: str, start: int, count: int) -> list[bytes]:
    keys = [str(n).encode() for n in range(start, start + count)]
    produce(broker.bootstrap_servers, topic, [b"value-" + key for key in keys], keys)
    return keys


def test_high_watermarks_are_exact_after_batched_produce(broker, topic_name):
    topic = topic_name("in")
    broker.create_topics([topic], partitions=3)
    produce_numbered(broker, topic, 0, 3000)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    partitions = [TopicPartition(topic, n) for n in range(3)]
    highs = high_watermarks(consumer, partitions)
    consumer.close()
    assert sum(highs.values()) == 3000


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


def test_streaming_read_sees_records_produced_while_it_runs(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=2)
    broker.create_topics([sink])
    before = produce_numbered(broker, source, 0, 200)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group, streaming=True, max_records=500, max_read_time_s=60)
    pipeline = threading.Thread(target=copy_topic, args=(spec, sink))
    pipeline.start()
    time.sleep(3)
    during = produce_numbered(broker, source, 200, 300)
    pipeline.join(timeout=90)
    assert not pipeline.is_alive(), "the streaming read did not stop at max_records"
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(before + during)
    assert sum(committed(broker, source, group).values()) == 500


def test_stop_request_ends_a_streaming_read_cleanly_and_commits(broker, topic_name):
    source, sink, group = topic_name("in"), topic_name("out"), topic_name("group")
    broker.create_topics([source], partitions=2)
    broker.create_topics([sink])
    keys = produce_numbered(broker, source, 0, 400)
    spec = KafkaReadSpec(broker.bootstrap_servers, source, group, streaming=True)
    pipeline = threading.Thread(target=copy_topic, args=(spec, sink))
    pipeline.start()
    deadline = time.monotonic() + 60
    while len(read_topic(broker.bootstrap_servers, sink)) < 400 and time.monotonic() < deadline:
        time.sleep(0.5)
    kafkaio.request_stop()
    pipeline.join(timeout=60)
    assert not pipeline.is_alive(), "the streaming read did not stop when asked"
    assert sorted(r.key for r in read_topic(broker.bootstrap_servers, sink)) == sorted(keys)
    assert sum(committed(broker, source, group).values()) == 400


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


def test_missing_topic_is_a_clear_error(broker, topic_name):
    spec = KafkaReadSpec(broker.bootstrap_servers, topic_name("absent"), topic_name("group"))
    with pytest.raises(Exception, match="does not exist"):
        copy_topic(spec, topic_name("out"))


def test_spec_validation():
    with pytest.raises(ValueError, match="group_id"):
        KafkaReadSpec("localhost:9092", "t", "")
    with pytest.raises(ValueError, match="max_records"):
        KafkaReadSpec("localhost:9092", "t", "g", max_records=0)
