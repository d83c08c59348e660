"""Offset commits: the group's offsets, committed by a bundle finalizer once the bundle's outputs are durable."""

from __future__ import annotations

import logging
import threading

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from wirecopy.transforms.kafkaio.spec import KafkaReadSpec

_LOG = logging.getLogger(__name__)


class OffsetCommitter:
    """Commits a reader's offsets to its consumer group, with a client of its own.

    Two clients, as Java's KafkaIO has: the reader's fetches (assigned
    partitions, no group), this one commits. A runner may run the finalizer
    (commit) on another thread than process() (poll), and kafka-python
    clients are not thread-safe, so they share nothing; finalizers of several
    bundles may overlap, hence the lock.
    """

    def __init__(self, spec: KafkaReadSpec):
        self._consumer = spec.new_consumer()
        self._lock = threading.Lock()

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            with self._lock:
                self._consumer.commit({p: OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
        except KafkaError as error:
            # At-least-once still holds: the next run re-reads from the last
            # offsets that did commit.
            _LOG.warning("could not commit offsets %s: %s", offsets, error)

    def close(self) -> None:
        self._consumer.close()
