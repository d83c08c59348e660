"""The sink: `WriteToKafka`, an idempotent producer with acks=all, flushed before each bundle ends."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.display import DisplayDataItem
from kafka import KafkaProducer
from kafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)

from wirecopy.transforms.kafkaio.spec import redacted

_LOG = logging.getLogger(__name__)

_PROGRESS_LOG_SECONDS = 10.0
# What at-least-once output rests on; producer_config may not weaken it.
_SINK_GUARANTEES = {"acks": "all", "enable_idempotence": True}
# The sink keeps each message until it is acknowledged, to resend it; past this
# it flushes mid-bundle. Bounded, and kept on the calling thread: messages freed
# by kafka-python's I/O thread (callbacks holding them) cost a page fault per
# message, ~30 % of the sink's time.
MAX_UNACKED_BYTES = 4 * 1024 * 1024
# Delivery failures no retry can fix; every other one is retried with a new
# producer before the bundle fails.
_UNDELIVERABLE = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    InvalidRecordError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
# What the producer adds around a key and value (record batch and record
# headers: about a hundred bytes), with room to spare; max_request_size counts it.
_RECORD_FRAMING_BYTES = 512


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
        raise ValueError(
            f"the sink needs {', '.join(f'{k}={_SINK_GUARANTEES[k]}' for k in weakened)} "
            "(at-least-once delivery); leave them out of producer_config"
        )


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
        settings = {
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "allow_auto_create_topics": False,
            **self._producer_config,
            **_SINK_GUARANTEES,
        }
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
        if self._unacked_bytes >= MAX_UNACKED_BYTES:
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
            failed = [
                (message, error)
                for message, outcome in self._unacked
                if (error := _delivery_error(outcome)) is not None
            ]
            self._unacked, self._unacked_bytes = [], 0
            if not failed:
                return
            permanent = next((error for _, error in failed if isinstance(error, _UNDELIVERABLE)), None)
            if permanent is not None or attempt == self._delivery_attempts:
                # Failing the bundle makes the runner retry it (or stop the
                # job) before any offset is committed: never a silent loss.
                raise RuntimeError(
                    f"{len(failed)} records were not delivered after {attempt} attempt(s): "
                    f"{permanent or failed[0][1]!r}"
                )
            _LOG.warning("%d records not delivered (%r); retrying with a new producer", len(failed), failed[0][1])
            time.sleep(min(2**attempt, 10))
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
            _LOG.info(
                "wrote (acknowledged) %s",
                ", ".join(
                    f"{records:,} records, {size / 1e6:,.1f} MB to {topic}"
                    for topic, (records, size) in self._written.items()
                ),
            )

    def teardown(self):
        self._producer.close()


class WriteToKafka(beam.PTransform):
    """Writes `KafkaMessage`s with an idempotent producer, `acks=all`.

    Flushes at the end of every bundle (and within one, whenever 4 MiB are
    unacknowledged) and retries failed deliveries (except
    those no retry can fix) with a new producer, so a bundle (and the input
    offsets its finalizer commits) is complete only once every record is
    acknowledged.

    Example::

        messages | WriteToKafka("localhost:9092", {"linger_ms": 20})
    """

    def __init__(
        self, bootstrap_servers: str, producer_config: Mapping[str, Any] | None = None, delivery_attempts: int = 5
    ):
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
            _WriteFn(self._bootstrap_servers, self._producer_config, self._delivery_attempts)
        )

    def display_data(self):
        return {
            "bootstrap_servers": self._bootstrap_servers,
            "producer_config": DisplayDataItem(repr(redacted(self._producer_config)), label="producer config"),
        }
