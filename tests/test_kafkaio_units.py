"""Pure unit tests of the Kafka source's restriction, tracker and timestamp policy."""

import dataclasses

import time

import pytest
from apache_beam.internal import pickler
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.utils.timestamp import Duration, Timestamp

from wirecopy.transforms.kafkaio import (
    END_OF_READ,
    Adopt,
    Claim,
    PartitionCursor,
    PartitionSet,
    PartitionSetTracker,
    ReadStop,
    TimestampKind,
    TimestampPolicy,
    redacted,
)
from wirecopy.transforms.kafkaio.read import ReadFn
from wirecopy.transforms.kafkaio.restriction import PartitionSetProvider


@dataclasses.dataclass
class Record:
    value: bytes = b"{}"
    timestamp: int = 1_700_000_000_000


def test_initial_split_gives_each_partition_its_own_restriction_plus_discovery():
    plan = PartitionSet("t", (PartitionCursor(0, 5), PartitionCursor(1, 7)), discover_from=2)
    parts = list(PartitionSetProvider().split(plan, plan))
    assert parts == [
        PartitionSet("t", (PartitionCursor(0, 5),)),
        PartitionSet("t", (PartitionCursor(1, 7),)),
        PartitionSet("t", (), discover_from=2),
    ]


def test_bounded_tracker_is_done_only_at_the_stop():
    tracker = PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 10, stop=12),)))
    assert tracker.is_bounded()
    assert tracker.try_claim(Claim(0, 0, 10))
    with pytest.raises(ValueError, match="not read to their end"):
        tracker.check_done()
    assert tracker.try_claim(Claim(0, 0, 11))
    assert not tracker.try_claim(Claim(0, 0, 12)), "the stop offset is not part of the read"
    tracker.check_done()


def test_claims_must_move_forward_except_into_a_new_epoch():
    tracker = PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 100),)))
    assert tracker.try_claim(Claim(0, 0, 100))
    with pytest.raises(ValueError, match="forward"):
        tracker.try_claim(Claim(0, 0, 100))
    assert tracker.try_claim(Claim(0, 1, 0)), "after a broker log reset the reader goes on in epoch 1"
    primary, residual = tracker.try_split(0)
    assert residual.cursors == (PartitionCursor(0, 1, epoch=1),)
    tracker.check_done()


def test_checkpoint_resumes_after_the_last_claim_and_keeps_discovery():
    tracker = PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 0), PartitionCursor(3, 9)), discover_from=4))
    assert not tracker.is_bounded()
    assert tracker.try_claim(Claim(0, 0, 0)) and tracker.try_claim(Claim(0, 0, 1))
    assert tracker.try_claim(Adopt(4, 0)) and tracker.try_claim(Claim(4, 0, 0))
    primary, residual = tracker.try_split(0)
    assert residual == PartitionSet("t", (PartitionCursor(0, 2), PartitionCursor(3, 9), PartitionCursor(4, 1)), 4)
    assert primary.discover_from is None
    tracker.check_done()
    assert not tracker.try_claim(Claim(0, 0, 2)), "nothing more can be claimed after a checkpoint"


def test_adopting_requires_the_discovery_right():
    tracker = PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 0),), discover_from=3))
    with pytest.raises(ValueError, match="cannot adopt"):
        tracker.try_claim(Adopt(2, 0))
    with pytest.raises(ValueError, match="cannot adopt"):
        PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 0),))).try_claim(Adopt(1, 0))


def test_end_of_read_finishes_an_unbounded_restriction():
    tracker = PartitionSetTracker(PartitionSet("t", (PartitionCursor(0, 0),), discover_from=1))
    assert tracker.try_claim(Claim(0, 0, 0))
    with pytest.raises(ValueError):
        tracker.check_done()
    assert not tracker.try_claim(END_OF_READ)
    tracker.check_done()
    assert tracker.current_restriction().cursors == (PartitionCursor(0, 0, stop=1),)
    assert tracker.try_split(0) is None


def test_timestamp_policies():
    record = Record(b'{"published_at": "2024-05-01T12:00:00+02:00"}')
    assert TimestampPolicy(TimestampKind.CREATE_TIME).timestamp_micros(record) == 1_700_000_000 * 10**6
    assert TimestampPolicy(TimestampKind.PUBLISHED_AT).timestamp_micros(record) == 1714557600 * 10**6
    assert TimestampPolicy(TimestampKind.PUBLISHED_AT).timestamp_micros(Record(b"\xff")) == 1_700_000_000 * 10**6
    rss = Record(b'{"published_at": "Wed, 01 May 2024 10:00:00 GMT"}')  # as feeds send it
    assert TimestampPolicy(TimestampKind.PUBLISHED_AT).timestamp_micros(rss) == 1714557600 * 10**6
    unreadable = Record(b'{"published_at": "last Tuesday"}')
    assert TimestampPolicy(TimestampKind.PUBLISHED_AT).timestamp_micros(unreadable) == 1_700_000_000 * 10**6
    before = time.time_ns() // 1000
    assert before <= TimestampPolicy(TimestampKind.PROCESSING_TIME).timestamp_micros(record) <= time.time_ns() // 1000
    delayed = TimestampPolicy(TimestampKind.CREATE_TIME, Duration(seconds=30))
    assert delayed.watermark(1000 * 10**6, caught_up=False) == Timestamp(970)
    assert delayed.watermark(None, caught_up=False) is None, "no event time yet: hold the watermark"
    assert delayed.watermark(1000 * 10**6, caught_up=True) > Timestamp.now() - 31, "idle: follow the clock"


def test_watermark_never_goes_backwards():
    estimator = ManualWatermarkEstimator(Timestamp(100))
    ReadFn._advance_watermark(estimator, Timestamp(50))
    assert estimator.current_watermark() == Timestamp(100)
    ReadFn._advance_watermark(estimator, None)
    assert estimator.current_watermark() == Timestamp(100)
    ReadFn._advance_watermark(estimator, Timestamp(150))
    assert estimator.current_watermark() == Timestamp(150)


def test_secrets_are_masked():
    assert redacted({"sasl_plain_password": "x", "ssl_password": "y", "client_id": "c"}) == {
        "sasl_plain_password": "***",
        "ssl_password": "***",
        "client_id": "c",
    }


def test_read_stop_reaches_readers_unpickled_in_this_process_and_no_other_run():
    stop, other_run = ReadStop(), ReadStop()
    reader_copy = pickler.loads(pickler.dumps(stop))  # as the runner ships the reader to its workers
    assert not reader_copy.requested()
    stop.request()
    assert reader_copy.requested()
    assert not other_run.requested() and not pickler.loads(pickler.dumps(other_run)).requested()
