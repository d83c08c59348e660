"""The pipeline's edges: raw records in, encoded output events out.

`DecodeArticles` turns source records into validated `Article`s (bad input
becomes a `DeadLetter` with its reason, in the same stream: see
`transforms/stage.py`); `EncodeEvents` turns every outcome into an
`OutputEvent`, validated against its schema and keyed so consumers can
deduplicate (articles by article id, cluster events by cluster id, dead
letters by source coordinates). Encoding sees every outcome, so it also logs
what the pipeline has produced so far, every 10 s: Beam metrics carry the same
counts, but the local runner reports them only when a run ends, and a
streaming run may never end.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import time
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from wirecopy.schemas import codec
from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, SourceRecord, Story
from wirecopy.transforms.stage import Outcome, run_stage

_LOG = logging.getLogger(__name__)

STAGE = "decode"
ENCODE_STAGE = "encode"
_PROGRESS_LOG_SECONDS = 10.0
# A dead letter without its payload (coordinates, reason, detail) must fit.
_SMALLEST_EVENT_LIMIT = 16 * 1024


class EventKind(str, enum.Enum):
    ARTICLE = "article"
    CLUSTER = "cluster"
    DEAD_LETTER = "dead_letter"
    STORY = "story"


@dataclasses.dataclass(frozen=True, slots=True)
class OutputEvent:
    kind: EventKind
    key: bytes
    value: bytes


def decode_article(record: SourceRecord, max_record_bytes: int, dropped: list[str] | None = None) -> Article:
    return Article(source=record, raw=codec.decode_raw_article(record.value, max_record_bytes, dropped))


class _DecodeFn(beam.DoFn):
    def __init__(self, max_record_bytes: int):
        self._max_record_bytes = max_record_bytes
        self._decoded = Metrics.counter("wirecopy", "articles_decoded")
        self._dropped = {
            name: Metrics.counter("wirecopy", f"decode_dropped_{name}") for name in codec.DROPPABLE_PROPERTIES
        }
        self._warned = False

    def process(self, record: SourceRecord) -> Iterable[Outcome]:
        dropped: list[str] = []
        try:
            article = decode_article(record, self._max_record_bytes, dropped)
        except Rejected as rejection:
            yield DeadLetter(rejection.reason, rejection.detail, STAGE, record)
            return
        self._decoded.inc()
        for name in dropped:
            self._dropped[name].inc()
        if dropped and not self._warned:  # one line per worker: the counters have the rest
            self._warned = True
            _LOG.warning(
                "article %s at %s/%d/%d: unreadable %s left out, the article goes on (counters decode_dropped_*)",
                article.article_id,
                record.topic,
                record.partition,
                record.offset,
                ", ".join(dropped),
            )
        yield article


class DecodeArticles(beam.PTransform):
    """`SourceRecord`s → outcomes: `Article`s, and `DeadLetter`s for records that are not raw articles.

    `max_record_bytes`: the largest record value decoded; a larger one is a dead letter.

    Example::

        outcomes = pipeline | ReadFromKafka(spec) | "Decode" >> DecodeArticles()
    """

    def __init__(self, max_record_bytes: int = codec.DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        if max_record_bytes <= 0:
            raise ValueError("max_record_bytes must be positive")
        self._max_record_bytes = max_record_bytes

    def expand(self, records):
        return records | "Decode" >> beam.ParDo(_DecodeFn(self._max_record_bytes))


def encode_article(article: Article, processed_at: str, max_bytes: int | None = None) -> OutputEvent:
    """The enriched event; raises `Rejected` when key and value exceed `max_bytes`."""
    key = article.article_id.encode()
    value = codec.encode(codec.enriched_article(article, processed_at), codec.ENRICHED_ARTICLE)
    if max_bytes is not None and len(key) + len(value) > max_bytes:
        raise Rejected(
            DeadLetterReason.PAYLOAD_TOO_LARGE,
            f"the enriched article is {len(key) + len(value):,} bytes; the output accepts {max_bytes:,}",
        )
    return OutputEvent(EventKind.ARTICLE, key, value)


def encode_cluster_event(event: ClusterEvent, occurred_at: str) -> OutputEvent:
    encoded = codec.cluster_event(event, occurred_at)
    return OutputEvent(EventKind.CLUSTER, event.cluster_id.encode(), codec.encode(encoded, codec.CLUSTER_EVENT))


def encode_story(story: Story, updated_at: str) -> OutputEvent:
    return OutputEvent(
        EventKind.STORY, story.story_id.encode(), codec.encode(codec.story(story, updated_at), codec.STORY)
    )


def encode_dead_letter(letter: DeadLetter, failed_at: str, max_bytes: int | None = None) -> OutputEvent:
    """The dead-letter event; its payload is cut when key and value would exceed `max_bytes`."""
    source = letter.source
    key = f"{source.topic}/{source.partition}/{source.offset}".encode()
    event = codec.dead_letter(letter, failed_at, None if max_bytes is None else max_bytes - len(key))
    return OutputEvent(EventKind.DEAD_LETTER, key, codec.encode(event, codec.DEAD_LETTER))


@dataclasses.dataclass
class OutcomeTally:
    """Counts of what was sent to the sink: enriched articles per language,
    dead letters per reason, cluster events per type, story updates."""

    languages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    dead_letters: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cluster_events: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    stories: int = 0

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, Story):
            self.stories += 1
        elif isinstance(outcome, Article):
            self.languages[outcome.language_tag["code"]] += 1
        elif isinstance(outcome, ClusterEvent):
            self.cluster_events[outcome.type] += 1
        else:
            self.dead_letters[outcome.reason.value] += 1

    def summary(self) -> str:
        def listed(counts: collections.Counter) -> str:
            return ", ".join(f"{name} {count:,}" for name, count in counts.most_common())

        return (
            f"enriched {self.languages.total():,} ({listed(self.languages) or 'none'}); "
            f"dead letters {self.dead_letters.total():,} ({listed(self.dead_letters) or 'none'}); "
            f"cluster events {listed(self.cluster_events) or 'none'}; story updates {self.stories:,}"
        )


class _EncodeFn(beam.DoFn):
    def __init__(self, max_event_bytes: int | None):
        self._max_event_bytes = max_event_bytes
        self._enriched = Metrics.counter("wirecopy", "articles_enriched")

    def setup(self):
        self._tally = OutcomeTally()
        self._last_progress_log = time.monotonic()

    def process(self, outcome: Outcome) -> Iterable[OutputEvent]:
        now = codec.now_timestamp()
        if isinstance(outcome, Article):
            encoded = run_stage(
                ENCODE_STAGE, outcome, lambda article: [encode_article(article, now, self._max_event_bytes)]
            )
            if isinstance(encoded[0], OutputEvent):
                self._enriched.inc()
                self._tally.add(outcome)
                yield encoded[0]
                return
            # Too large for the output, or it broke its schema (a stage's bug): dead-lettered rather than written.
            outcome = encoded[0]
        self._tally.add(outcome)
        if isinstance(outcome, Story):
            yield encode_story(outcome, now)
        elif isinstance(outcome, ClusterEvent):
            yield encode_cluster_event(outcome, now)
        elif isinstance(outcome, DeadLetter):
            Metrics.counter("wirecopy", f"dead_letter_{outcome.reason.value}").inc()
            yield encode_dead_letter(outcome, now, self._max_event_bytes)
        else:  # an article is encoded above: anything else is a stage's bug, which fails the bundle loudly
            raise TypeError(f"no output event for a {type(outcome).__name__}")

    def finish_bundle(self):
        # Bundles end at least every second while records flow (the Kafka
        # reader checkpoints), so the line comes close to its interval.
        if time.monotonic() - self._last_progress_log >= _PROGRESS_LOG_SECONDS:
            self._last_progress_log = time.monotonic()
            _LOG.info("so far: %s", self._tally.summary())


def check_max_event_bytes(max_event_bytes: int | None) -> None:
    """Raises ValueError for an output limit too small for a dead letter."""
    if max_event_bytes is not None and max_event_bytes < _SMALLEST_EVENT_LIMIT:
        raise ValueError(
            f"the output must take events of at least {_SMALLEST_EVENT_LIMIT:,} bytes (a dead letter "
            f"needs room), not {max_event_bytes:,}: for Kafka, raise the producer's max_request_size"
        )


class EncodeEvents(beam.PTransform):
    """Outcomes → `OutputEvent`s, each validated against its schema and keyed for consumers.

    `max_event_bytes`: the largest event (key and value) the output takes,
    None for no limit. An enriched article over it becomes a `payload_too_large`
    dead letter, and a dead letter's payload is cut to fit it: the sink never
    gets a message it must refuse, which would fail every retry of the bundle.

    Example::

        messages = outcomes | "Encode" >> EncodeEvents(max_event_bytes=1_048_576)
    """

    def __init__(self, max_event_bytes: int | None = None):
        super().__init__()
        check_max_event_bytes(max_event_bytes)
        self._max_event_bytes = max_event_bytes

    def expand(self, outcomes):
        return outcomes | "Encode" >> beam.ParDo(_EncodeFn(self._max_event_bytes))
