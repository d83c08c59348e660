"""The read's restriction: a set of partitions with a cursor each, and its tracker and provider."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.transforms.core import RestrictionProvider


@dataclasses.dataclass(frozen=True)
class PartitionCursor:
    """Where one partition's read stands.

    `epoch` counts how often the broker's log restarted below our position (a
    broker that lost its data): positions compare as (epoch, offset), so the
    reader can go on from the new log's start without claiming backwards.
    """

    partition: int
    offset: int
    stop: int | None = None
    epoch: int = 0

    @property
    def position(self) -> tuple[int, int]:
        return (self.epoch, self.offset)


@dataclasses.dataclass(frozen=True)
class PartitionSet:
    """A restriction: partitions with their cursors; in streaming, plus the
    right to adopt partitions numbered `discover_from` or more when they appear.

    `budget`: how many more records the restriction may read, whichever of its
    partitions they come from (the part of `max_records` that the records in
    the topic at plan time did not cover). It is a property of the restriction,
    so its checkpoints carry what is left and no count lives in a reader
    instance; a restriction with a budget is never split, as one budget cannot
    be shared by readers that do not talk to each other.
    """

    topic: str
    cursors: tuple[PartitionCursor, ...]
    discover_from: int | None = None
    budget: int | None = None

    def is_bounded(self) -> bool:
        return self.discover_from is None and all(c.stop is not None for c in self.cursors)


class Claim(NamedTuple):
    """Claims every offset of the partition up to `offset`; `records` of them are read (counted against the budget)."""

    partition: int
    epoch: int
    offset: int
    records: int = 0


class Adopt(NamedTuple):
    partition: int
    offset: int


END_OF_READ = "end-of-read"  # claiming it finishes the restriction (stop requested)


class PartitionSetTracker(RestrictionTracker):
    def __init__(self, restriction: PartitionSet):
        self._restriction = restriction
        self._cursors = {c.partition: c for c in restriction.cursors}
        self._claimed: dict[int, tuple[int, int]] = {}
        self._exhausted: set[int] = set()
        self._finished = False
        self._claim_count = 0
        self._records_claimed = 0

    def current_restriction(self) -> PartitionSet:
        return self._restriction

    def try_claim(self, position) -> bool:
        if self._finished:
            return False
        if position == END_OF_READ:
            self._finish()
            return False
        if isinstance(position, Adopt):
            discover_from = self._restriction.discover_from
            if discover_from is None or position.partition < discover_from or position.partition in self._cursors:
                raise ValueError(f"cannot adopt partition {position.partition} in {self._restriction}")
            adopted = PartitionCursor(position.partition, position.offset)
            self._cursors[position.partition] = adopted
            self._restriction = dataclasses.replace(self._restriction, cursors=self._restriction.cursors + (adopted,))
            return True
        cursor = self._cursors.get(position.partition)
        if cursor is None or position.partition in self._exhausted:
            return False
        claim = (position.epoch, position.offset)
        if claim < cursor.position or claim <= self._claimed.get(position.partition, (-1, -1)):
            raise ValueError(f"claims must move forward: {position} after {self._claimed.get(position.partition)}")
        if cursor.stop is not None and position.offset >= cursor.stop:
            self._exhausted.add(position.partition)
            return False
        if position.records > self.budget_left():
            raise ValueError(f"{position} claims more records than the {self.budget_left()} left of the budget")
        self._claimed[position.partition] = claim
        self._claim_count += 1
        self._records_claimed += position.records
        return True

    def budget_left(self) -> float:
        """Records the restriction may still claim (infinite without a budget)."""
        budget = self._restriction.budget
        return float("inf") if budget is None else budget - self._records_claimed

    def _spent(self) -> int | None:
        """The budget of the work done (the primary), None when the restriction has no budget."""
        return None if self._restriction.budget is None else self._records_claimed

    def _finish(self) -> None:
        """Shrink the restriction to what was claimed: nothing is left to do."""
        cursors = []
        for cursor in self._cursors.values():
            epoch, last = self._claimed.get(cursor.partition, (cursor.epoch, cursor.offset - 1))
            cursors.append(
                dataclasses.replace(cursor, epoch=epoch, stop=last + 1)
                if epoch == cursor.epoch
                else dataclasses.replace(cursor, stop=cursor.offset)
            )
        self._restriction = dataclasses.replace(
            self._restriction, cursors=tuple(cursors), discover_from=None, budget=self._spent()
        )
        self._finished = True

    def _next_cursor(self, cursor: PartitionCursor) -> PartitionCursor:
        if cursor.partition not in self._claimed:
            return cursor
        epoch, offset = self._claimed[cursor.partition]
        return dataclasses.replace(cursor, epoch=epoch, offset=offset + 1)

    def try_split(self, fraction_of_remainder):
        # Only checkpoints: partitions are split apart once, at the start.
        if fraction_of_remainder != 0 or self._finished:
            return None
        remaining = tuple(
            self._next_cursor(c)
            for c in self._cursors.values()
            if c.partition not in self._exhausted and (c.stop is None or self._next_cursor(c).offset < c.stop)
        )
        budget = self._restriction.budget
        residual = PartitionSet(
            self._restriction.topic,
            remaining,
            self._restriction.discover_from,
            None if budget is None else budget - self._records_claimed,
        )
        self._finish()
        return self._restriction, residual

    def check_done(self):
        if self._finished or self.budget_left() == 0:
            return
        unfinished = [
            c.partition
            for c in self._cursors.values()
            if c.partition not in self._exhausted
            and (c.stop is None or self._claimed.get(c.partition, (c.epoch, c.offset - 1))[1] < c.stop - 1)
        ]
        if unfinished or self._restriction.discover_from is not None:
            raise ValueError(f"partitions {unfinished} of {self._restriction.topic} are not read to their end")

    def current_progress(self) -> RestrictionProgress:
        if self._restriction.budget is not None:
            remaining = self._restriction.budget - self._records_claimed
        else:
            remaining = sum(
                max(c.stop - self._next_cursor(c).offset, 0) for c in self._cursors.values() if c.stop is not None
            )
        return RestrictionProgress(completed=self._claim_count, remaining=remaining)

    def is_bounded(self) -> bool:
        return self._restriction.is_bounded()


class PartitionSetProvider(RestrictionProvider):
    def initial_restriction(self, plan: PartitionSet) -> PartitionSet:
        return plan

    def split(self, plan: PartitionSet, restriction: PartitionSet):
        if restriction.budget is not None:
            yield restriction
            return
        for cursor in restriction.cursors:
            yield PartitionSet(restriction.topic, (cursor,))
        if restriction.discover_from is not None:
            yield PartitionSet(restriction.topic, (), restriction.discover_from)

    def create_tracker(self, restriction: PartitionSet) -> PartitionSetTracker:
        return PartitionSetTracker(restriction)

    def restriction_size(self, plan: PartitionSet, restriction: PartitionSet) -> int:
        if restriction.budget is not None:
            return restriction.budget
        return sum(max(c.stop - c.offset, 0) for c in restriction.cursors if c.stop is not None)

    def truncate(self, plan: PartitionSet, restriction: PartitionSet):
        # On drain, stop reading: what was not read is not committed and the
        # next run starts there.
        return None
