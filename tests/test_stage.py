"""The stage contract: routing written once (`Step`, `StatefulStep`), and cheap state weighing (`state_weight`)."""

from typing import Any, NamedTuple

import apache_beam as beam
import pytest
from apache_beam.runners.worker import statecache
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, SourceRecord
from test_syndication import sample_records
from benchmarks.in_order import InOrder
from wirecopy.transforms import syndication as syn
from wirecopy.transforms.normalise import _SourceTemplateFn, draft_article, finish, remember, seen_article
from wirecopy.transforms.stage import (
    SendsBatches,
    StatefulStep,
    StateVersionError,
    Step,
    StoredValue,
    StoredValueCoder,
    opened,
    within_horizon,
    state_weight,
    upgraded,
    weigh_state_cheaply,
)


@pytest.fixture
def beam_weighing_restored():
    beams = statecache.get_deep_size
    yield beams
    statecache.get_deep_size = beams


def state_values() -> list:
    """What the stateful stages keep, built from the bundled samples by their pure functions."""
    stream, history = InOrder(), []
    for record in sample_records():
        try:
            draft = draft_article(record)
            article = finish(draft)
        except Rejected:  # a sample with nothing but boilerplate
            continue
        history = remember(history, seen_article(draft)[0])
        stream.send(article.with_language({"code": "en", "confidence": 1.0}))
    return [history, *stream.buckets.values(), *stream.shards.values(), *stream.announcers.values()]


def test_state_values_weigh_as_beam_weighs_them(beam_weighing_restored):
    """Our state, what the SDK's cache holds of it (lists of stored values), and other shapes Beam weighs."""
    values = state_values()
    assert len(values) > 100
    stored = [StoredValue(data=syn.encode_bucket(v)) for v in values if isinstance(v, syn.Bucket)]
    shared = ["shared", 2**70]
    others = [[], [stored[0]], stored, [shared, shared, (shared, None)], {"a": 1.5, None: b"x"}, object(), statecache]
    beams = beam_weighing_restored
    assert [state_weight(value) for value in [*values, *others]] == [beams(value) for value in [*values, *others]]
    assert state_weight(stored[0], stored[0], []) == beams(stored[0], stored[0], [])


@pytest.mark.parametrize(
    "stateful_fn",
    [
        lambda: syn._IndexFn(1),
        lambda: syn._DecideFn(1),
        lambda: syn._AnnounceFn(1),
        _SourceTemplateFn,
    ],
    ids=["index", "decide", "announce", "source-template"],
)
def test_every_stateful_stage_weighs_state_cheaply_on_its_worker(beam_weighing_restored, stateful_fn):
    stateful_fn().setup()
    assert statecache.get_deep_size is state_weight
    weigh_state_cheaply()  # idempotent
    assert statecache.get_deep_size is state_weight


def test_a_stored_value_is_encoded_once_and_weighed_as_its_bytes():
    encoded = []

    def encode(value):
        encoded.append(value)
        return syn.encode_bucket(value)

    bucket = max((v for v in state_values() if isinstance(v, syn.Bucket)), key=lambda b: len(b.entries))
    stored = StoredValue(bucket, encode)
    coder = StoredValueCoder()
    data = coder.encode(stored)
    # What the SDK's cache holds for a key (a list of the bag's values) weighs the bytes, not the decoded bucket.
    assert statecache.get_deep_size([stored]) < len(data) + 400 < statecache.get_deep_size([bucket])
    assert coder.encode(stored) is data and encoded == [bucket]
    assert coder.decode(data).value(syn.decode_bucket) == bucket


class _Tally(NamedTuple):
    """A message of the test steps below: one article's word for its key's running count."""

    source: SourceRecord
    article_id: str
    word: str


class _KeyByWordFn(Step):
    stage, handles = "KeyByWord", (Article,)

    def key_output(self, message):
        return message.word if isinstance(message, _Tally) else "passing"

    def handle(self, key, article):
        if article.raw.get("word") == "bad":
            raise Rejected(DeadLetterReason.EMPTY_TEXT, "no word")
        return [_Tally(article.source, article.article_id, article.raw["word"])]


class _CountFn(StatefulStep):
    """Emits each word's running count; a `crash` fails after reading the state, which must stay unchanged."""

    stage, handles = "Count", (_Tally,)
    COUNT = ReadModifyWriteStateSpec("count", beam.coders.PickleCoder())

    def process(self, keyed, count=beam.DoFn.StateParam(COUNT)):
        return self.route(keyed, count)

    def step(self, count, tally):
        if tally.article_id.startswith("crash"):
            raise RuntimeError("a bug")
        return (count or 0) + 1, [f"{tally.word} {(count or 0) + 1}"]


def _word_article(offset: int, article_id: str, word: str) -> Article:
    return Article(SourceRecord("t", 0, offset, b"{}"), {"id": article_id, "word": word})


def _counted(pipeline, key_fn: beam.DoFn, inputs: list) -> beam.PCollection:
    """`inputs` keyed by `key_fn` and counted per word: dead letters as (stage, reason, article id)."""
    outputs = (
        pipeline
        | beam.Create(inputs, reshuffle=False)
        | "Key" >> beam.ParDo(key_fn).with_output_types(tuple[str, Any])
        | "Count" >> beam.ParDo(_CountFn())
    )
    return outputs | beam.Map(lambda o: (o.stage, o.reason.value, o.article_id) if isinstance(o, DeadLetter) else o)


def test_steps_route_their_own_types_pass_the_rest_and_dead_letter_failures():
    article = _word_article
    event = ClusterEvent("created", "c1", "a1", "a1", 1.0, "new")
    inputs = [article(0, "a1", "x"), article(1, "a2", "bad"), article(2, "crash-1", "x"), event, article(3, "a3", "x")]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        summary = _counted(pipeline, _KeyByWordFn(), inputs)
        # The crash left x's count as it was: a3 counts 2, not 3.
        assert_that(
            summary,
            equal_to([("KeyByWord", "empty_text", "a2"), ("Count", "stage_error", "crash-1"), event, "x 1", "x 2"]),
        )


class _KeyByWordInBatchesFn(SendsBatches, _KeyByWordFn):
    """`_KeyByWordFn` whose outputs leave as one `Batch` per key when the bundle ends."""

    def process(self, article, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        self.batches.add(self.route(article), window, timestamp)


def test_a_stateful_step_handles_a_batch_as_its_messages_one_by_one():
    article = _word_article
    event = ClusterEvent("created", "c1", "a1", "a1", 1.0, "new")
    inputs = [
        article(0, "a1", "x"),
        article(1, "a2", "bad"),
        article(2, "crash-1", "x"),
        event,
        article(3, "a3", "x"),
        article(4, "a4", "y"),
        article(5, "a5", "x"),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        summary = _counted(pipeline, _KeyByWordInBatchesFn(), inputs)
        # In x's batch the crash left the count as the message before it left it: a3 counts 2, a5 3.
        assert_that(
            summary,
            equal_to(
                [
                    ("KeyByWord", "empty_text", "a2"),
                    ("Count", "stage_error", "crash-1"),
                    event,
                    "x 1",
                    "x 2",
                    "x 3",
                    "y 1",
                ]
            ),
        )


class _Seen(NamedTuple):
    since_ms: int
    open: bool = False


def test_keyed_state_keeps_what_changed_within_the_horizon_of_its_own_clock():
    entries = {"old": _Seen(100), "edge": _Seen(400), "new": _Seen(900), "waiting": _Seen(50, open=True)}
    assert within_horizon(entries, 1_000, 600) == {"edge": _Seen(400), "new": _Seen(900)}
    assert list(within_horizon(entries, 1_000, 600, keep=lambda e: e.open)) == ["edge", "new", "waiting"]
    # Opening copies the entries (state values are immutable) and never moves the clock back.
    copied, newest_ms = opened(entries, 1_000, 700)
    assert copied == entries and copied is not entries and newest_ms == 1_000
    assert opened(None, None, 700) == ({}, 700)


# Each migration appends its source version, so the result shows which ran and in what order.
MIGRATIONS = {1: lambda state: [*state, 1], 2: lambda state: [*state, 2]}


def test_upgraded_applies_the_migrations_from_the_stored_version_one_at_a_time():
    assert upgraded("test", [], 1, 3, MIGRATIONS) == [1, 2]
    assert upgraded("test", [], 2, 3, MIGRATIONS) == [2]
    assert upgraded("test", [], 3, 3, MIGRATIONS) == []


@pytest.mark.parametrize(
    "version, current, migrations, message",
    [
        (4, 3, MIGRATIONS, "test state version 4: this code reads versions 1, 2, 3 only"),
        (1, 3, {2: MIGRATIONS[2]}, "test state version 1: this code reads versions 2, 3 only"),
        (0, 3, MIGRATIONS, "test state version 0: this code reads versions 1, 2, 3 only"),
        (2, 1, {}, "test state version 2: this code reads version 1 only"),
    ],
    ids=["newer", "no-migration", "below-the-first", "no-migrations-at-all"],
)
def test_upgraded_refuses_a_version_it_cannot_reach_naming_what_it_found_and_what_it_reads(
    version, current, migrations, message
):
    with pytest.raises(StateVersionError, match=message):
        upgraded("test", [], version, current, migrations)
