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


def share_records(count: int, backlogs: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """`count` records shared among partitions in proportion to their backlogs, never more than a partition holds.

    Proportional (largest remainder; ties to the lower partition number) rather
    than first come: the partitions' lag shrinks together, so a run reads about
    the oldest records of each partition when they filled at similar rates,
    and repeated bounded runs catch every partition up in the same run.
    """
    total = sum(backlogs.values())
    if count >= total:
        return dict(backlogs)
    shares = {p: count * backlog // total for p, backlog in backlogs.items()}
    by_remainder = sorted(backlogs, key=lambda p: (-(count * backlogs[p] % total), p.partition))
    for partition in by_remainder[: count - sum(shares.values())]:
        shares[partition] += 1
    return shares


def read_plan(spec: KafkaReadSpec, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> PartitionSet:
    """The read of the partitions in `starts` (to `ends`, the high watermarks now, when bounded).

    `max_records` N is a property of the read, not of a reader: when the
    partitions hold N records between their starts and ends (always, bounded),
    each partition gets a stop so that the stops add up to N (`share_records`;
    fewer when the topic holds fewer, or when its offsets have gaps:
    compaction, transaction markers) and nothing is discovered. Streaming, when
    the topic holds fewer than N, the whole read is one restriction with a
    budget of N records (`PartitionSet.budget`), partition discovery included,
    so records that have not arrived yet count wherever they land.
    """
    partitions = sorted(starts, key=lambda p: p.partition)
    backlogs = {p: max(ends[p] - starts[p], 0) for p in partitions}
    stops: dict[TopicPartition, int | None] = {p: None for p in partitions} if spec.streaming else dict(ends)
    budget = None
    if spec.max_records is not None and spec.streaming and spec.max_records > sum(backlogs.values()):
        budget = spec.max_records
    elif spec.max_records is not None:
        shares = share_records(spec.max_records, backlogs)
        stops = {p: starts[p] + shares[p] for p in partitions}
    unbounded = all(stop is None for stop in stops.values())
    return PartitionSet(
        spec.topic,
        tuple(
            PartitionCursor(p.partition, starts[p], None if (stop := stops[p]) is None else max(stop, starts[p]))
            for p in partitions
        ),
        discover_from=max(p.partition for p in partitions) + 1 if unbounded else None,
        budget=budget,
    )


class PlanReadFn(beam.DoFn):
    """Turns the impulse into the read plan: every partition with its start (and stop); see `read_plan`."""

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
        plan = read_plan(spec, starts, ends)
        for cursor in plan.cursors:
            _LOG.info(
                "reading %s[%d] from offset %d to %s",
                plan.topic,
                cursor.partition,
                cursor.offset,
                "the end of time" if cursor.stop is None else cursor.stop,
            )
        if plan.budget is not None:
            _LOG.info(
                "max_records %d is more than %s holds now: one restriction reads every partition (and any added)"
                " until %d records are read",
                plan.budget,
                plan.topic,
                plan.budget,
            )
        yield plan

    def teardown(self):
        self._consumer.close()
