"""The pipeline's edges: raw records in, encoded output events out.

`DecodeArticles` turns source records into validated `Article`s (bad input
goes to the dead letters with its reason); `EncodeEvents` turns the stages'
results into `OutputEvent`s, each validated against its schema and keyed so
consumers can deduplicate (articles by article id, cluster events by cluster
id, dead letters by source coordinates).
"""

from __future__ import annotations

import dataclasses
import enum

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import codec
from schemas.records import Article, ClusterEvent, DeadLetter, Rejected, SourceRecord
from transforms.stage import apply_stage, reject

STAGE = "decode"


class EventKind(str, enum.Enum):
    ARTICLE = "article"
    CLUSTER = "cluster"
    DEAD_LETTER = "dead_letter"


@dataclasses.dataclass(frozen=True, slots=True)
class OutputEvent:
    kind: EventKind
    key: bytes
    value: bytes


def decode_article(record: SourceRecord, max_record_bytes: int) -> Article:
    return Article(source=record, raw=codec.decode_raw_article(record.value, max_record_bytes))


class _DecodeFn(beam.DoFn):
    def __init__(self, max_record_bytes: int):
        self._max_record_bytes = max_record_bytes
        self._decoded = Metrics.counter("wirecopy", "articles_decoded")

    def process(self, record: SourceRecord):
        try:
            article = decode_article(record, self._max_record_bytes)
        except Rejected as rejection:
            yield reject(STAGE, record, rejection)
            return
        self._decoded.inc()
        yield article


class DecodeArticles(beam.PTransform):
    """`SourceRecord`s → (`Article`s, `DeadLetter`s)."""

    def __init__(self, max_record_bytes: int = codec.DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        if max_record_bytes <= 0:
            raise ValueError("max_record_bytes must be positive")
        self._max_record_bytes = max_record_bytes

    def expand(self, records):
        return apply_stage(records, "Decode", _DecodeFn(self._max_record_bytes))


def encode_article(article: Article, processed_at: str) -> OutputEvent:
    event = codec.enriched_article(article, processed_at)
    return OutputEvent(EventKind.ARTICLE, article.article_id.encode(), codec.encode(event, codec.ENRICHED_ARTICLE))


def encode_cluster_event(event: ClusterEvent, occurred_at: str) -> OutputEvent:
    encoded = codec.cluster_event(event, occurred_at)
    return OutputEvent(EventKind.CLUSTER, event.cluster_id.encode(), codec.encode(encoded, codec.CLUSTER_EVENT))


def encode_dead_letter(letter: DeadLetter, failed_at: str) -> OutputEvent:
    source = letter.source
    key = f"{source.topic}/{source.partition}/{source.offset}".encode()
    return OutputEvent(EventKind.DEAD_LETTER, key, codec.encode(codec.dead_letter(letter, failed_at), codec.DEAD_LETTER))


class _CountDeadLetterFn(beam.DoFn):
    def process(self, letter: DeadLetter):
        Metrics.counter("wirecopy", f"dead_letter_{letter.reason.value}").inc()
        yield letter


class EncodeEvents(beam.PTransform):
    """(articles, cluster events, dead letters) → `OutputEvent`s.

    An article whose enriched event fails its schema is a bug in a stage; it is
    dead-lettered as `stage_error` rather than written or dropped.
    """

    def expand(self, outputs):
        articles, cluster_events, dead_letters = outputs
        encoded_articles, broken = apply_stage(articles, "EncodeArticles", _EncodeArticleFn())
        all_dead = (dead_letters, broken) | "AllDeadLetters" >> beam.Flatten()
        return (
            encoded_articles,
            cluster_events | "EncodeClusterEvents" >> beam.Map(lambda e: encode_cluster_event(e, codec.now_timestamp())),
            all_dead
            | "CountDeadLetters" >> beam.ParDo(_CountDeadLetterFn())
            | "EncodeDeadLetters" >> beam.Map(lambda d: encode_dead_letter(d, codec.now_timestamp())),
        ) | "AllEvents" >> beam.Flatten()


class _EncodeArticleFn(beam.DoFn):
    def __init__(self):
        self._written = Metrics.counter("wirecopy", "articles_enriched")

    def process(self, article: Article):
        event = encode_article(article, codec.now_timestamp())
        self._written.inc()
        yield event
