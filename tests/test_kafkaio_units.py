"""Pure unit tests of the Kafka source's restriction, tracker and timestamp policy."""

import dataclasses

import time

import pytest
from apache_beam.internal import pickler
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.utils.timestamp import Duration, Timestamp
from kafka import TopicPartition

from wirecopy.transforms.kafkaio import (
    END_OF_READ,
    Adopt,
    Claim,
    KafkaReadSpec,
    PartitionCursor,
    PartitionSet,
    PartitionSetTracker,
    ReadStop,
    TimestampKind,
    TimestampPolicy,
    redacted,
)
from wirecopy.transforms.kafkaio.plan import read_plan, share_records
from wirecopy.transforms.kafkaio.read import LiveReaders, ReadFn
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


def partitions(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition("t", n) for n in numbers]


def test_max_records_are_shared_in_proportion_to_the_backlogs_and_add_up_exactly():
    p0, p1, p2 = partitions(0, 1, 2)
    assert share_records(100, {p0: 900, p1: 90, p2: 10}) == {p0: 90, p1: 9, p2: 1}
    shares = share_records(10, {p0: 1, p1: 1, p2: 1_000_000})  # skewed: the big partition gets almost all
    assert sum(shares.values()) == 10 and shares[p0] <= 1 and shares[p1] <= 1
    assert share_records(2, {p0: 5, p1: 5, p2: 5}) == {p0: 1, p1: 1, p2: 0}, "ties go to the lower partitions"
    assert share_records(50, {p0: 3, p1: 0, p2: 4}) == {p0: 3, p1: 0, p2: 4}, "never more than a partition holds"
    for count in range(1, 40):
        shares = share_records(count, {p0: 7, p1: 13, p2: 19})
        assert sum(shares.values()) == count and all(0 <= shares[p] <= b for p, b in zip((p0, p1, p2), (7, 13, 19)))


def test_a_bounded_plan_with_max_records_stops_each_partition_at_its_share():
    p0, p1 = partitions(0, 1)
    spec = KafkaReadSpec("localhost:9092", "t", "g", max_records=30)
    plan = read_plan(spec, {p0: 100, p1: 0}, {p0: 140, p1: 20})
    assert plan == PartitionSet("t", (PartitionCursor(0, 100, stop=120), PartitionCursor(1, 0, stop=10)))
    every = read_plan(KafkaReadSpec("localhost:9092", "t", "g", max_records=500), {p0: 100, p1: 0}, {p0: 140, p1: 20})
    assert [c.stop for c in every.cursors] == [140, 20], "a bounded read never goes past the high watermarks"


def test_a_streaming_plan_with_max_records_stops_in_the_backlog_or_carries_a_budget():
    p0, p1 = partitions(0, 1)
    starts, ends = {p0: 0, p1: 5}, {p0: 10, p1: 15}
    covered = read_plan(KafkaReadSpec("localhost:9092", "t", "g", streaming=True, max_records=20), starts, ends)
    assert covered == PartitionSet("t", (PartitionCursor(0, 0, stop=10), PartitionCursor(1, 5, stop=15)))
    assert covered.discover_from is None, "the records counted are all there: new partitions are not read"
    ahead = read_plan(KafkaReadSpec("localhost:9092", "t", "g", streaming=True, max_records=21), starts, ends)
    assert ahead == PartitionSet("t", (PartitionCursor(0, 0), PartitionCursor(1, 5)), discover_from=2, budget=21)
    unlimited = read_plan(KafkaReadSpec("localhost:9092", "t", "g", streaming=True), starts, ends)
    assert unlimited == PartitionSet("t", (PartitionCursor(0, 0), PartitionCursor(1, 5)), discover_from=2)


def test_a_budget_is_never_split_and_checkpoints_carry_what_is_left():
    plan = PartitionSet("t", (PartitionCursor(0, 0), PartitionCursor(1, 0)), discover_from=2, budget=10)
    assert list(PartitionSetProvider().split(plan, plan)) == [plan]
    tracker = PartitionSetTracker(plan)
    assert tracker.try_claim(Claim(0, 0, 3, records=4)) and tracker.try_claim(Adopt(2, 7))
    assert tracker.try_claim(Claim(2, 0, 8, records=2))
    primary, residual = tracker.try_split(0)
    assert residual == PartitionSet(
        "t", (PartitionCursor(0, 4), PartitionCursor(1, 0), PartitionCursor(2, 9)), discover_from=2, budget=4
    )
    assert primary.budget == 6
    resumed = PartitionSetTracker(residual)  # as a restore from a checkpoint, in any reader instance
    with pytest.raises(ValueError, match="budget"):
        resumed.try_claim(Claim(1, 0, 4, records=5))
    assert resumed.try_claim(Claim(1, 0, 3, records=4))
    resumed.check_done()  # the budget is spent: done, though no partition has a stop
    assert not resumed.try_claim(END_OF_READ)
    assert resumed.current_restriction().budget == 4


def test_live_readers_report_each_change_once():
    live = LiveReaders()
    live.opened()
    live.opened()
    assert live.unreported() == 2 and live.unreported() == 0
    live.closed()
    live.opened()
    live.closed()
    assert live.count() == 1 and live.unreported() == -1 and live.unreported() == 0
