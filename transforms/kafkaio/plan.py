"""The topic plan: the impulse becomes every partition of the topic with its start (and stop)."""

from __future__ import annotations

import logging
from typing import Iterable

import apache_beam as beam
from kafka import TopicPartition

from wirecopy.transforms.kafkaio.offsets import log_extents, start_offsets
from wirecopy.transforms.kafkaio.restriction import PartitionCursor, PartitionSet
from wirecopy.transforms.kafkaio.spec import KafkaReadSpec

_LOG = logging.getLogger(__name__)


class PlanReadFn(beam.DoFn):
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
            _LOG.info(
                "reading %s[%d] from offset %d to %s",
                partition.topic,
                partition.partition,
                starts[partition],
                "the end of time" if stop is None else stop,
            )
        yield PartitionSet(
            spec.topic,
            tuple(
                PartitionCursor(p.partition, starts[p], None if (stop := stops[p]) is None else max(stop, starts[p]))
                for p in partitions
            ),
            discover_from=max(numbers) + 1 if spec.streaming else None,
        )

    def teardown(self):
        self._consumer.close()
