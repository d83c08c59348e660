"""Event contracts: decoding raw records, encoding outputs, and the decode/encode stages."""

import base64
import dataclasses

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirecopy.schemas import codec
from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, SourceRecord, Story
from wirecopy.transforms.events import DecodeArticles, EncodeEvents, EventKind, OutcomeTally
from wirecopy.transforms.jsonlio import records_from_lines
from wirecopy.transforms.stage import run_stage

from articles import content


def record(value: bytes, offset: int = 0) -> SourceRecord:
    return SourceRecord(topic="raw", partition=1, offset=offset, value=value, key=b"k", timestamp_ms=1700000000000)


@pytest.mark.parametrize(
    "value, reason",
    [
        (b'{"id": "a", "text": ', DeadLetterReason.INVALID_JSON),
        (b"\xff\xfe{\x00", DeadLetterReason.INVALID_ENCODING),
        ('{"id": "a", "text": "caf\u00e9"}'.encode("latin-1"), DeadLetterReason.INVALID_ENCODING),
        (b'{"id": 7, "text": "x"}', DeadLetterReason.SCHEMA_VIOLATION),
        (b'{"text": "no id"}', DeadLetterReason.SCHEMA_VIOLATION),
        (b'{"id": "a", "text": 7}', DeadLetterReason.SCHEMA_VIOLATION),
        (b'["not", "an", "object"]', DeadLetterReason.SCHEMA_VIOLATION),
    ],
)
def test_bad_raw_records_are_rejected_with_their_reason(value, reason):
    with pytest.raises(Rejected) as rejection:
        codec.decode_raw_article(value)
    assert rejection.value.reason is reason
    assert rejection.value.detail


@pytest.mark.parametrize(
    "unreadable",
    [
        {"published_at": 1741624920},
        {"published_at": ["2026-03-10"]},
        {"title": {"en": "A title"}},
        {"url": 42, "language": "x" * 36},
    ],
)
def test_an_unreadable_optional_property_costs_that_property_not_the_article(unreadable):
    dropped: list[str] = []
    raw = codec.decode_raw_article(
        orjson.dumps({"id": "a", "text": "Body.", "title": "Kept", **unreadable}), dropped=dropped
    )
    assert raw == {"id": "a", "text": "Body.", **({} if "title" in unreadable else {"title": "Kept"})}
    assert sorted(dropped) == sorted(unreadable)


def test_feed_forms_of_published_at_decode():
    for published_at in ("Tue, 10 Mar 2026 16:42:00 GMT", "2026-03-10 16:42", "10.03.2026", "yesterday"):
        dropped: list[str] = []
        assert (
            codec.decode_raw_article(orjson.dumps({"id": "a", "published_at": published_at}), dropped=dropped)[
                "published_at"
            ]
            == published_at
        )
        assert dropped == []  # read (or dropped) by the normalise stage, which keeps the raw string


def test_decode_counts_the_properties_it_drops():
    records = [
        record(orjson.dumps({"id": "a", "text": "t", "published_at": 17}), 0),
        record(orjson.dumps({"id": "b", "text": "t", "title": 1, "source": 2}), 1),
        record(orjson.dumps({"id": "c", "text": 5}), 2),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outcomes = pipeline | beam.Create(records) | DecodeArticles()
        assert_that(
            outcomes | beam.Map(lambda o: (type(o).__name__, sorted(getattr(o, "raw", {})))),
            equal_to([("Article", ["id", "text"]), ("Article", ["id", "text"]), ("DeadLetter", [])]),
        )
    counters = {m.key.metric.name: m.committed for m in pipeline.result.metrics().query()["counters"]}
    assert (
        counters["decode_dropped_published_at"],
        counters["decode_dropped_title"],
        counters["decode_dropped_source"],
    ) == (1, 1, 1)
    assert counters["articles_decoded"] == 2


def test_oversized_records_are_rejected_before_parsing():
    with pytest.raises(Rejected) as rejection:
        codec.decode_raw_article(b'{"id": "a", "text": "' + b"x" * 200 + b'"}', max_bytes=100)
    assert rejection.value.reason is DeadLetterReason.PAYLOAD_TOO_LARGE


def test_valid_raw_article_decodes_with_bom_and_unknown_fields():
    raw = codec.decode_raw_article(
        b'\xef\xbb\xbf{"id": "a", "text": "t", "published_at": "2026-11-20T10:00:00+01:00", "extra": 1}'
    )
    assert raw["id"] == "a" and raw["extra"] == 1


def test_dead_letter_schema_lists_exactly_the_python_reasons():
    schema = codec.load_schema(codec.DEAD_LETTER)
    assert set(schema["properties"]["reason"]["enum"]) == {reason.value for reason in DeadLetterReason}


def test_dead_letter_event_keeps_original_bytes_and_coordinates():
    source = record(b"\x00\x01 not json", offset=42)
    event = codec.dead_letter(
        DeadLetter(DeadLetterReason.INVALID_JSON, "bad", "decode", source), "2026-11-23T06:00:00.000Z"
    )
    codec.validator(codec.DEAD_LETTER)(event)
    assert base64.b64decode(event["payload"]) == b"\x00\x01 not json"
    assert (event["topic"], event["partition"], event["offset"]) == ("raw", 1, 42)


def test_outgoing_events_that_break_their_schema_raise():
    with pytest.raises(Exception, match="must"):
        codec.encode({"schema_version": 1, "article_id": "a"}, codec.ENRICHED_ARTICLE)


def test_jsonl_lines_carry_their_line_numbers_and_skip_blank_lines():
    records = list(records_from_lines("in.jsonl", b'{"id":"a"}\n\n{"id":"b"}\r\n  \n{"id":"c"}'))
    assert [(r.offset, r.value) for r in records] == [(0, b'{"id":"a"}'), (2, b'{"id":"b"}'), (4, b'{"id":"c"}')]


def complete_article(article_id: str, offset: int) -> Article:
    return Article(
        source=record(b"{}", offset),
        raw={"id": article_id},
        content=content(article_id),
        language={"code": "en", "confidence": 0.99},
        cluster={"id": "c1", "canonical_id": article_id, "similarity": 1.0, "match": "new"},
    )


def test_decode_and_encode_stages_route_every_record_in_one_stream():
    records = [record(b'{"id": "good", "text": "hello"}', 0), record(b"{oops", 1), record(b'{"id": 3}', 2)]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outcomes = pipeline | beam.Create(records) | DecodeArticles()
        summary = outcomes | beam.Map(lambda o: (type(o).__name__, o.source.offset, getattr(o, "reason", None)))
        assert_that(
            summary,
            equal_to(
                [
                    ("Article", 0, None),
                    ("DeadLetter", 1, DeadLetterReason.INVALID_JSON),
                    ("DeadLetter", 2, DeadLetterReason.SCHEMA_VIOLATION),
                ]
            ),
        )

    broken = complete_article("broken", 5).with_language({"code": "english", "confidence": 2})
    letter = DeadLetter(DeadLetterReason.EMPTY_TEXT, "nothing left", "normalise", record(b'{"id":"e"}', 3), "e")
    outcomes = [complete_article("a1", 4), broken, ClusterEvent("created", "c1", "a1", "a1", 1.0, "new"), letter]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        events = pipeline | beam.Create(outcomes) | EncodeEvents()
        summary = events | beam.Map(lambda e: (e.kind, e.key, _reason_or_id(e.value)))
        assert_that(
            summary,
            equal_to(
                [
                    (EventKind.ARTICLE, b"a1", "a1"),
                    (EventKind.CLUSTER, b"c1", "c1"),
                    (EventKind.DEAD_LETTER, b"raw/1/3", "empty_text"),
                    # An enriched event that breaks the output schema is a stage bug: dead-lettered, not written.
                    (EventKind.DEAD_LETTER, b"raw/1/5", "stage_error"),
                ]
            ),
        )


def test_run_stage_turns_rejections_and_bugs_into_dead_letters():
    article = complete_article("a", 7)

    def reject(_):
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "nothing left")

    def crash(_):
        yield article
        raise KeyError("bug")

    assert run_stage("s", article, lambda a: [a]) == [article]
    [rejected] = run_stage("s", article, reject)
    assert (rejected.reason, rejected.stage, rejected.article_id, rejected.source.offset) == (
        DeadLetterReason.EMPTY_TEXT,
        "s",
        "a",
        7,
    )
    [crashed] = run_stage("s", article, crash)
    assert crashed.reason is DeadLetterReason.STAGE_ERROR and "KeyError('bug')" in crashed.detail, "no partial output"


def _reason_or_id(value: bytes) -> str:
    event = orjson.loads(value)
    for field in ("reason", "cluster_id", "article_id"):
        if field in event:
            return event[field]
    raise AssertionError(f"unrecognised event {event}")


def test_the_progress_tally_counts_languages_dead_letters_cluster_events_and_stories():
    tally = OutcomeTally()
    source = record(b"{}")
    for code in ("de", "en", "de"):
        tally.add(Article(source, {"id": code}, content(code), {"code": code, "confidence": 1.0}))
    tally.add(DeadLetter(DeadLetterReason.INVALID_JSON, "cut short", "decode", source))
    tally.add(ClusterEvent("created", "c-1", "a", "a"))
    tally.add(ClusterEvent("joined", "c-1", "b", "a"))
    tally.add(ClusterEvent("joined", "c-1", "c", "a"))
    tally.add(Story("c-1", {}))
    assert tally.summary() == (
        "enriched 3 (de 2, en 1); dead letters 1 (invalid_json 1); cluster events joined 2, created 1; story updates 1"
    )
    assert OutcomeTally().summary() == (
        "enriched 0 (none); dead letters 0 (none); cluster events none; story updates 0"
    )


def test_null_optional_properties_count_as_absent_through_the_stages():
    """Many producers write a missing field as null: the article is enriched, not dead-lettered."""
    from wirecopy.transforms.language import LanguageDetector
    from wirecopy.transforms.normalise import draft_article, finish

    nulls = dict.fromkeys(("url", "source", "title", "html", "published_at", "language"))
    value = orjson.dumps({"id": "n-1", "text": "The harbour reopened on Monday after the storm.", **nulls})
    article = finish(draft_article(Article(record(value), codec.decode_raw_article(value))))
    assert article.content.title is None and article.content.published_at is None
    assert LanguageDetector().detect(article.content.text, title=None, hint=None).code == "en"
    with pytest.raises(Rejected) as rejection:
        codec.decode_raw_article(b'{"id": null, "text": "x"}')
    assert rejection.value.reason is DeadLetterReason.SCHEMA_VIOLATION


def test_a_dead_letter_cut_to_a_size_limit_keeps_the_payload_start_and_says_so():
    source = SourceRecord("raw", 2, 41, b"x" * 100_000, b"key", 1700000000000, (("trace", b"t"),))
    letter = DeadLetter(DeadLetterReason.PAYLOAD_TOO_LARGE, "too big", "encode", source, "a")
    whole = codec.dead_letter(letter, "2026-11-30T00:00:00.000Z")
    assert "payload_truncated" not in whole and base64.b64decode(whole["payload"]) == source.value
    assert codec.dead_letter(letter, "2026-11-30T00:00:00.000Z", max_bytes=200_000) == whole
    cut = codec.dead_letter(letter, "2026-11-30T00:00:00.000Z", max_bytes=20_000)
    encoded = codec.encode(cut, codec.DEAD_LETTER)  # still schema-valid
    assert 19_000 < len(encoded) <= 20_000
    assert cut["payload_truncated"] is True and cut["payload_bytes"] == 100_000
    assert source.value.startswith(base64.b64decode(cut["payload"]))
    assert (cut["topic"], cut["partition"], cut["offset"]) == ("raw", 2, 41), "the way back to the whole record"


def test_an_article_too_large_for_the_output_becomes_a_dead_letter_that_fits():
    large = complete_article("large", 1)
    large = dataclasses.replace(large, source=record(b"r" * 60_000, 1), content=content("large", text="word " * 10_000))
    outcomes = [complete_article("small", 0), large]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        events = pipeline | beam.Create(outcomes) | EncodeEvents(max_event_bytes=20_000)
        summary = events | beam.Map(
            lambda e: (
                e.kind,
                e.key,
                _reason_or_id(e.value),
                len(e.key) + len(e.value) <= 20_000,
                orjson.loads(e.value).get("stage"),
            )
        )
        assert_that(
            summary,
            equal_to(
                [
                    (EventKind.ARTICLE, b"small", "small", True, None),
                    (EventKind.DEAD_LETTER, b"raw/1/1", "payload_too_large", True, "encode"),
                ]
            ),
        )
    with pytest.raises(ValueError, match="at least 16,384 bytes"):
        EncodeEvents(max_event_bytes=100)
