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

The package follows Java's KafkaIO split, one concern a module: `spec` (what
a read is, its event-time policy and stop request), `restriction` (partition
sets and their tracker), `offsets` (offset queries), `plan` (the topic plan),
`read` (the reader), `commit` (offset commits) and `write` (the sink).
Unlike Java's, the reader follows a log that restarts below its position (a
broker that lost its data) in a new epoch: see `restriction.PartitionCursor`.
"""

from wirecopy.transforms.kafkaio.offsets import group_lag, high_watermarks, log_extents, offsets_at_time, start_offsets
from wirecopy.transforms.kafkaio.read import ReadFromKafka
from wirecopy.transforms.kafkaio.restriction import (
    END_OF_READ,
    Adopt,
    Claim,
    PartitionCursor,
    PartitionSet,
    PartitionSetTracker,
)
from wirecopy.transforms.kafkaio.spec import (
    DEFAULT_PARTITION_DISCOVERY_INTERVAL_S,
    KafkaReadSpec,
    ReadStop,
    StartPosition,
    TimestampKind,
    TimestampPolicy,
    redacted,
)
from wirecopy.transforms.kafkaio.write import KafkaMessage, WriteToKafka, check_producer_config, largest_message_bytes

__all__ = [
    "DEFAULT_PARTITION_DISCOVERY_INTERVAL_S",
    "END_OF_READ",
    "Adopt",
    "Claim",
    "KafkaMessage",
    "KafkaReadSpec",
    "PartitionCursor",
    "PartitionSet",
    "PartitionSetTracker",
    "ReadFromKafka",
    "ReadStop",
    "StartPosition",
    "TimestampKind",
    "TimestampPolicy",
    "WriteToKafka",
    "check_producer_config",
    "group_lag",
    "high_watermarks",
    "largest_message_bytes",
    "log_extents",
    "offsets_at_time",
    "redacted",
    "start_offsets",
]
