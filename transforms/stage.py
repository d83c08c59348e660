"""How stages pass work along: one stream from the reader to the sink.

On the local runner (FnApiRunner) a Flatten of several PCollections runs in
the runner, outside the fused stages: after an unbounded Kafka read it stalls
until the read ends, while the reader keeps committing offsets. So nothing in
the streaming path merges streams: every stage takes and returns ONE
PCollection of outcomes (`Article`, `DeadLetter`, `ClusterEvent`, `Story`,
and between a stage's steps its own messages), and the sink at the end writes
each outcome to its topic.

The routing is written once, in `Step`: a step declares the message types it
handles and how what leaves it is keyed, handles only those, and everything
else passes through untouched. A stateful step (`StatefulStep`) is one pure
function `(state, message) -> (state, outputs)` per key.

A stage's pure functions raise `Rejected` for input they cannot use;
`run_stage` turns that, and any unexpected exception (a bug), into a
`DeadLetter` in the same stream, so one bad record never stops the pipeline
and nothing is dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import traceback
from typing import (
    Any,
    Callable,
    ClassVar,
    Generic,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Protocol,
    TypeVar,
    Union,
    cast,
)

import apache_beam as beam
from apache_beam.runners.worker import statecache
from apache_beam.utils.windowed_value import WindowedValue

from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, SourceRecord, Story

Outcome = Union[Article, DeadLetter, ClusterEvent, Story]
Value = TypeVar("Value")
State = TypeVar("State")
Handled = TypeVar("Handled")


def run_stage(stage: str, message: Any, work: Callable[[Any], Iterable[Any]]) -> list[Any]:
    """The outputs of one stage's work on one message; failures become dead letters of the message's record.

    Every message a stage handles carries the `source` record it came from
    (and its `article_id`, when known). The outputs are collected before any
    is emitted, so a failure halfway never emits part of a message's results.
    A failure on a message without a record (nothing to dead-letter) fails
    the bundle, which the runner retries.
    """
    try:
        return list(work(message))
    except Exception as error:  # a stage's bug costs one record a dead letter, never the pipeline
        source = getattr(message, "source", None)
        if not isinstance(source, SourceRecord):
            raise
        article_id = getattr(message, "article_id", None)
        if isinstance(error, Rejected):
            return [DeadLetter(error.reason, error.detail, stage, source, article_id)]
        trace = "".join(traceback.format_exception(error)[-3:])
        return [DeadLetter(DeadLetterReason.STAGE_ERROR, f"{error!r}\n{trace}", stage, source, article_id)]


class Step(beam.DoFn, Generic[Handled]):
    """One step of a stage over the single stream: the routing, written once.

    A step declares the message types it `handles`, whether its input arrives
    keyed (`(key, message)` pairs, as a stateful step needs) and how what
    leaves it is keyed for the next step (`key_output`, None: unkeyed), and
    implements `handle(key, message)` for them. Everything else passes through
    untouched (re-keyed by `key_output`); a failure of `handle` becomes a dead
    letter named after `stage` (see `run_stage`). A stateful step declares its
    state in `process` (Beam reads state specs from its signature) and
    passes it on: see `StatefulStep`.

    Example::

        class _TagFn(Step[Article]):
            stage, handles = "Tag", (Article,)

            def handle(self, key: None, article: Article) -> list[Article]:
                return [article.with_language(...)]
    """

    stage: ClassVar[str]
    handles: ClassVar[tuple[type, ...]]
    keyed_input: ClassVar[bool] = False

    def key_output(self, message: Any) -> Hashable | None:
        """The key a message leaves this step under; None: steps after it take messages unkeyed."""
        return None

    def handle(self, key: Any, message: Handled) -> Iterable[Any]:
        raise NotImplementedError

    def handle_in(self, state: Any, key: Any, message: Handled) -> Iterable[Any]:
        """`handle`, given the step's Beam state (see `StatefulStep`)."""
        return self.handle(key, message)

    def process(self, element: Any) -> Iterator[Any]:
        return self.route(element)

    def route(self, element: Any, state: Any = None) -> Iterator[Any]:
        key, message = element if self.keyed_input else (None, element)
        if isinstance(message, self.handles):
            outputs = run_stage(self.stage, message, lambda handled: self.handle_in(state, key, handled))
        else:
            outputs = [message]
        yield from self._keyed(outputs)

    def _keyed(self, outputs: Iterable[Any]) -> Iterator[Any]:
        """Each output with the key `key_output` gives it, or alone where it gives none."""
        for output in outputs:
            output_key = self.key_output(output)
            yield output if output_key is None else (output_key, output)


class StatefulStep(Step[Handled], Generic[Handled, State]):
    """A keyed step whose work is one pure function of its key's state: `step(state, message) -> (state, outputs)`.

    The state is read before `step` and written only after it returned, so a
    message that fails (a dead letter) leaves its key's state as it was.
    The value is stored as it is, or, when the step sets `encoded`, as the
    versioned bytes of its `EncodedState`. Every
    worker's `setup()` makes the state cache's weighing cheap (see
    `weigh_state_cheaply`).
    """

    keyed_input = True
    encoded: EncodedState[State] | None = None

    def setup(self):
        weigh_state_cheaply()

    def step(self, state: State | None, message: Handled) -> tuple[State, Iterable[Any]]:
        raise NotImplementedError

    def handle_in(self, state: Any, key: Any, message: Handled) -> Iterable[Any]:
        value, outputs = self.step(self._read(state, key), message)
        outputs = list(outputs)
        self._write(state, key, value)
        return outputs

    def route(self, element: Any, state: Any = None) -> Iterator[Any]:
        """A `Batch` is handled with one state read and at most one write; anything else as `Step.route` does."""
        key, message = element
        if not isinstance(message, Batch):
            yield from super().route(element, state)
            return
        before = value = self._read(state, key)
        outputs: list[Any] = []
        for queued in message.messages:
            if isinstance(queued, self.handles):
                value, results = self._step_alone(value, cast(Handled, queued))
                outputs.extend(results)
            else:
                outputs.append(queued)
        if value is not None and value is not before:
            self._write(state, key, value)
        yield from self._keyed(outputs)

    def _step_alone(self, value: State | None, message: Handled) -> tuple[State | None, list[Any]]:
        """The value after `message` and its outputs; a message that fails (a dead letter) leaves `value` as it was."""
        stepped: list[State] = []

        def work(handled: Handled) -> list[Any]:
            after, outputs = self.step(value, handled)
            outputs = list(outputs)
            stepped.append(after)
            return outputs

        outputs = run_stage(self.stage, message, work)
        return (stepped[0] if stepped else value), outputs

    def _read(self, state: Any, key: Any) -> State | None:
        return state.read() if self.encoded is None else self.encoded.read(state, key)

    def _write(self, state: Any, key: Any, value: State) -> None:
        if self.encoded is None:
            state.write(value)
        else:
            self.encoded.write(state, key, value)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Messages for one key, in the order a step sent them: a `StatefulStep` handles them with one state read
    and one write, and the runner passes them as one element."""

    messages: tuple[Any, ...]


class BatchesByKey:
    """A step's keyed outputs over a bundle, sent on as one `Batch` per key and window when the bundle ends.

    Each element through a stateful step costs the runner its invocation, and each message a state read and
    write of its key: an article's index replies (one per bucket, ~32) all go to its home shard, so batched
    they cost that once per article and bundle instead of once per reply. Nothing is emitted before the
    bundle ends, and a failed bundle's batches are dropped with it, as the runner retries the bundle.
    """

    def __init__(self) -> None:
        self._messages: dict[tuple[Hashable, Any], tuple[list[Any], Any]] = {}

    def add(self, keyed: Iterable[tuple[Hashable, Any]], window: Any, timestamp: Any) -> None:
        for key, message in keyed:
            messages, latest = self._messages.setdefault((key, window), ([], timestamp))
            messages.append(message)
            if timestamp > latest:
                self._messages[key, window] = messages, timestamp

    def drain(self) -> Iterator[WindowedValue]:
        for (key, window), (messages, latest) in self._messages.items():
            yield WindowedValue((key, Batch(tuple(messages))), latest, (window,))
        self._messages = {}


class SendsBatches:
    """A step whose keyed outputs leave in `Batch`es when the bundle ends: its `process` hands what `route`
    yields to `self.batches` (with the element's window and timestamp) and returns nothing."""

    batches: BatchesByKey

    def start_bundle(self):
        self.batches = BatchesByKey()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        return self.batches.drain()


class StateVersionError(ValueError):
    """Stored state this code cannot read: another kind of state, or a version it cannot upgrade from."""


def upgraded(
    what: str, state: Value, version: int, current: int, migrations: Mapping[int, Callable[[Value], Value]]
) -> Value:
    """`state` as stored at `version`, brought to `current` one version at a time: `migrations[v]` turns a
    version-`v` state into a version-`v + 1` one. A savepoint written by an older release is then read by a newer
    one; a version this code cannot reach (newer than `current`, or with a migration missing on the way) raises
    `StateVersionError` naming `what` state, the version found and the versions this code reads.
    """
    if not all(step in migrations for step in range(version, current)) or not 1 <= version <= current:
        readable = [v for v in range(1, current + 1) if all(step in migrations for step in range(v, current))]
        raise StateVersionError(
            f"{what} state version {version}: this code reads version{'s' if len(readable) > 1 else ''} "
            f"{', '.join(map(str, readable))} only (state written by another wirecopy release)"
        )
    for step in range(version, current):
        state = migrations[step](state)
    return state


class Dated(Protocol):
    @property
    def since_ms(self) -> int: ...  # the state's clock when the entry last changed


Key = TypeVar("Key", bound=Hashable)
Entry = TypeVar("Entry", bound=Dated)


def opened(entries: Mapping[Key, Entry] | None, newest_ms: int | None, event_ms: int) -> tuple[dict[Key, Entry], int]:
    """A keyed state's entries (none before its first message), copied to change, and its clock moved on to
    `event_ms`: the stages' state values are immutable."""
    return dict(entries or {}), max(newest_ms or 0, event_ms)


def within_horizon(
    entries: Mapping[Key, Entry], newest_ms: int, horizon_ms: int, keep: Callable[[Entry], bool] | None = None
) -> dict[Key, Entry]:
    """A keyed state's entries that changed (`since_ms`) within `horizon_ms` of its clock, and those `keep` keeps.

    Stateful stages prune on access, by their state's own clock (`newest_ms`,
    the newest event time it has seen), so state stays bounded on any runner
    without timers.
    """
    oldest_ms = newest_ms - horizon_ms
    return {
        key: entry
        for key, entry in entries.items()
        if entry.since_ms >= oldest_ms or (keep is not None and keep(entry))
    }


def weigh_state_cheaply() -> None:
    """Make Beam's state cache weigh what it holds with `state_weight`: the same weights, a fraction of the cost.

    The SDK harness (local and production alike) weighs a key's values every
    time its state cache takes them: when a bundle first reads the key, when
    it clears it and when it writes it, three times per key and bundle (the
    local runner hands out a new cache token per bundle). Beam weighs with
    objsize, whose default first collected the globals dict of every loaded
    module (~1,400 here) to exclude them, ~0.5 ms per access; without that
    scan, objsize's per-call set-up (a settings object, a traversal context,
    generator chains) still cost 28 us for an empty list and 57 us for a
    stored value, against 9 and 26 us for `state_weight` (timed on this
    machine under load; 3 weighs per key, ~32 keys per article). Process-wide
    and idempotent: stateful stages call it in `setup()`, which runs on every
    worker.
    """
    statecache.get_deep_size = state_weight


def state_weight(*objs: Any) -> int:
    """What Beam's `statecache.get_deep_size` returns for `objs` (`tests/test_stage.py` compares them).

    objsize's breadth-first walk with Beam's size, referents and filter
    functions, each object counted once and None never: Beam's filter never
    descends into modules, types or functions, the only holders of module
    globals, so objsize's exclusion of those adds nothing. What the cache
    holds of an `EncodedState` key, its bag's values (none, or one
    `StoredValue`, whose only referent is its bytes), is summed directly.
    """
    if len(objs) == 1 and type(objs[0]) is list and len(objs[0]) <= 1:
        values = objs[0]
        if not values:
            return sys.getsizeof(values)
        if type(values[0]) is StoredValue:
            return sys.getsizeof(values) + sys.getsizeof(values[0]) + sys.getsizeof(values[0].data())
    size, keep, referents = statecache._size_func, statecache._filter_func, statecache._get_referents_func
    marked = {id(None)}
    total = 0
    layer: Iterable[Any] = objs
    while True:
        fresh: dict[int, Any] = {}
        for obj in layer:
            obj_id = id(obj)
            if obj_id not in marked and obj_id not in fresh and keep(obj):
                fresh[obj_id] = obj
        if not fresh:
            return total
        marked.update(fresh)
        total += sum(map(size, fresh.values()))
        layer = referents(*fresh.values())


class StoredValue(statecache.CacheAware):
    """A stateful stage's value as Beam state holds it: encoded by the stage's own versioned codec once, when the
    bundle commits it (or the SDK's cache weighs it), and weighed as those bytes.

    The SDK's state cache weighs what it holds with objsize when it loads a key
    and again when a bundle commits it, walking every object of a decoded value
    (a full index bucket is thousands of objects); bytes weigh in constant time.
    Once encoded, only the bytes are kept (the decoded value lives in the
    stage's `EncodedState` while it is in use).
    """

    def __init__(self, value: Any = None, encode: Callable[[Any], bytes] | None = None, data: bytes | None = None):
        super().__init__()
        self._value, self._encode, self._data = value, encode, data

    def data(self) -> bytes:
        if self._data is None:
            self._data = cast(Callable[[Any], bytes], self._encode)(self._value)  # given with every value
            self._value = self._encode = None
        return self._data

    def value(self, decode: Callable[[bytes], Any]) -> Any:
        return decode(self._data) if self._data is not None else self._value

    def get_referents_for_cache(self) -> list[Any]:
        return [self.data()]


class StoredValueCoder(beam.coders.Coder):
    """The state coder of `EncodedState`'s values: their own bytes, whatever their codec."""

    def encode(self, stored: StoredValue) -> bytes:
        return stored.data()

    def decode(self, data: bytes) -> StoredValue:
        return StoredValue(data=data)

    def is_deterministic(self) -> bool:
        return False


class EncodedState(Generic[Value]):
    """A stateful DoFn's value per key, kept in a `ReadModifyWriteStateSpec(name, StoredValueCoder())`.

    A value is encoded once per key and bundle, when the bundle commits, and
    weighed as bytes (see `StoredValue`). The local runner hands out a new
    cache token per bundle, so every key a bundle touches is loaded and
    committed once in it. The decoded value of each of the last `remembered`
    keys is kept beside what it was stored as: a key read again before anyone
    else wrote it is not decoded again. Values must be immutable: the stages'
    pure functions return new ones.
    """

    def __init__(self, encode: Callable[[Value], bytes], decode: Callable[[bytes], Value], remembered: int = 1024):
        self._encode, self._decode, self._remembered = encode, decode, remembered
        self._decoded: collections.OrderedDict[Hashable, tuple[StoredValue, Value]] = collections.OrderedDict()

    def read(self, state: Any, key: Hashable) -> Value | None:
        stored = state.read()
        if stored is None:
            return None
        known = self._decoded.get(key)
        if known is not None and known[0] is stored:
            return known[1]
        value = stored.value(self._decode)
        self._remember(key, stored, value)
        return value

    def write(self, state: Any, key: Hashable, value: Value) -> None:
        stored = StoredValue(value, self._encode)
        state.write(stored)
        self._remember(key, stored, value)

    def _remember(self, key: Hashable, stored: StoredValue, value: Value) -> None:
        self._decoded[key] = (stored, value)
        self._decoded.move_to_end(key)
        if len(self._decoded) > self._remembered:
            self._decoded.popitem(last=False)
