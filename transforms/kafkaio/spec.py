"""What a read is: topic, group, start, stop, event time; and the request to stop it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
import time
from typing import Any, Mapping

import orjson
from apache_beam.utils import shared
from apache_beam.utils.timestamp import Duration, Timestamp
from kafka import KafkaConsumer

from wirecopy.schemas.published_at import parse_published_at

# The longest one poll waits for records; a fetch of an idle partition is
# answered within half of it (fetch_max_wait_ms), so one poll learns it is idle.
POLL_TIMEOUT_MS = 200
# How often a streaming read looks for partitions added to its topic: a new
# partition's first records wait up to this long; each look is one metadata request.
DEFAULT_PARTITION_DISCOVERY_INTERVAL_S = 30.0
_SECRET_MARKERS = ("password", "secret", "token", "jaas", "keyfile")


class ReadStop:
    """A request to end one run's Kafka reads cleanly: whoever runs the
    pipeline keeps it and calls `request()`; the run's readers see it at their
    next poll, end their restrictions, and the pipeline finishes its bundles
    and commits.

    It travels with the pickled reader as a Beam `Shared` handle: a reader
    unpickled in the requester's process (the local runner, Prism's loopback
    workers) acquires the requester's own event. Workers in another process
    never see it; such jobs are stopped through the job service
    (`cli.JobStopper` cancels them).
    """

    def __init__(self):
        self._handle = shared.Shared()
        self._event = self._handle.acquire(threading.Event)  # held: Shared keeps only weak references

    def __getstate__(self):
        return {"_handle": self._handle}

    def __setstate__(self, state):
        self._handle = state["_handle"]
        self._event = self._handle.acquire(threading.Event)

    def request(self) -> None:
        self._event.set()

    def requested(self) -> bool:
        return self._event.is_set()


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """Client configuration fit for logs and display data: secrets masked."""
    return {
        key: "***" if any(marker in key.lower() for marker in _SECRET_MARKERS) else value
        for key, value in config.items()
    }


class StartPosition(str, enum.Enum):
    COMMITTED = "committed"  # the group's committed offset, else `auto_offset_reset` (earliest by default)
    EARLIEST = "earliest"
    LATEST = "latest"


class TimestampKind(str, enum.Enum):
    PROCESSING_TIME = "processing-time"
    CREATE_TIME = "create-time"
    LOG_APPEND_TIME = "log-append-time"
    PUBLISHED_AT = "published-at"


@dataclasses.dataclass(frozen=True)
class TimestampPolicy:
    """Event time of each record, and the watermark of a partition.

    `timestamp_micros(record)` gives a record's event time, in microseconds
    since the epoch (an int, not a `Timestamp`: the reader calls it for every
    record, and Beam stores event times as micros anyway); `watermark(latest,
    caught_up)` gives the partition's watermark from the latest event time
    read and whether the reader has caught up with the partition's end. An
    idle, caught-up partition advances to now (minus the allowed delay) so it
    never holds the pipeline's watermark back. Callers keep it monotonic.
    """

    kind: TimestampKind = TimestampKind.CREATE_TIME
    max_delay: Duration = Duration(seconds=0)

    def timestamp_micros(self, record) -> int:
        if self.kind is TimestampKind.PROCESSING_TIME:
            return time.time_ns() // 1000
        if self.kind is TimestampKind.PUBLISHED_AT:
            published = _published_at_micros(record.value)
            if published is not None:
                return published
        # Records from old clients may carry no timestamp (-1).
        if record.timestamp is None or record.timestamp < 0:
            return time.time_ns() // 1000
        return record.timestamp * 1000

    def watermark(self, latest_micros: int | None, caught_up: bool) -> Timestamp | None:
        if self.kind is TimestampKind.PROCESSING_TIME or caught_up:
            return Timestamp.now() - self.max_delay
        return None if latest_micros is None else Timestamp(micros=latest_micros) - self.max_delay


def _published_at_micros(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        published = parse_published_at(orjson.loads(value).get("published_at"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return None if published is None else Timestamp.from_utc_datetime(published).micros


@dataclasses.dataclass(frozen=True)
class KafkaReadSpec:
    """Everything the source needs; immutable, so it ships with the DoFns.

    `consumer_config` is passed to kafka-python's KafkaConsumer as is
    (security_protocol, sasl_mechanism, ssl_cafile, ...); it is masked in
    logs and display data.
    """

    bootstrap_servers: str
    topic: str
    group_id: str
    streaming: bool = False
    start_position: StartPosition = StartPosition.COMMITTED
    start_time: dt.datetime | None = None
    timestamp_policy: TimestampPolicy = TimestampPolicy()
    partition_discovery_interval_s: float = DEFAULT_PARTITION_DISCOVERY_INTERVAL_S
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
        if self.partition_discovery_interval_s <= 0:
            raise ValueError("partition_discovery_interval_s must be positive")
        if self.start_time is not None and self.start_time.tzinfo is None:
            raise ValueError("start_time needs a time zone")
        unknown = set(self.consumer_config) - set(KafkaConsumer.DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown kafka-python consumer settings: {', '.join(sorted(unknown))}")

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["consumer_config"] = redacted(self.consumer_config)
        return f"KafkaReadSpec({', '.join(f'{name}={value!r}' for name, value in fields.items())})"

    def new_consumer(self, in_group: bool = True) -> KafkaConsumer:
        """A consumer with the spec's settings; `in_group=False` leaves out the
        group id, for a consumer that only fetches (its polls then never wait
        on the group coordinator)."""
        settings = {
            "enable_auto_commit": False,
            # Never create a topic by asking for it: a deleted input topic
            # would come back with the broker's default partitions.
            "allow_auto_create_topics": False,
            "auto_offset_reset": "earliest",
            # Metadata refreshes at the discovery interval, so new partitions show up.
            "metadata_max_age_ms": int(self.partition_discovery_interval_s * 1000),
            # The broker answers an idle partition's fetch within one poll, so the
            # reader learns it has caught up (and advances the watermark) at once.
            "fetch_max_wait_ms": POLL_TIMEOUT_MS // 2,
            **self.consumer_config,
        }
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id if in_group else None, **settings
        )
