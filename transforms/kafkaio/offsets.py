"""Offset queries: where a read starts, a partition's extent, a group's lag."""

from __future__ import annotations

import datetime as dt
import time

from kafka import KafkaConsumer, TopicPartition

from wirecopy.transforms.kafkaio.spec import POLL_TIMEOUT_MS, KafkaReadSpec, StartPosition


def start_offsets(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    position: StartPosition,
    start_time: dt.datetime | None,
    earliest: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
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


def offsets_at_time(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    time_ms: int,
    ends: dict[TopicPartition, int],
    timeout_s: float = 30.0,
) -> dict[TopicPartition, int]:
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
        for partition, records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).items():
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


def log_extents(
    consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float = 10.0
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
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
        consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1)
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
