import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import Article, SourceRecord
from transforms.normalise import fingerprint
from transforms.syndication import ClusterSyndicated, assign_exact, cluster_id_for, sort_key


def make_article(article_id: str, text: str, published_at: str | None = None, offset: int = 0,
                 timestamp_ms: int | None = None) -> Article:
    source = SourceRecord("articles.raw", 0, offset, b"{}", timestamp_ms=timestamp_ms)
    raw = {"id": article_id, "text": text}
    fields = {"article_id": article_id, "published_at": published_at, "title": None, "text": text,
              "source": None, "language": {"code": "en", "confidence": 1.0}}
    return Article(source, raw, fields, fingerprint(text))


STORY = "The minister will meet technology firms next week.\n\nThey will discuss misinformation."


def test_first_article_creates_the_cluster_and_an_exact_copy_joins_it():
    first = make_article("a1", STORY, "2024-03-01T10:00:00.000Z", offset=0)
    copy = make_article("a2", STORY.replace("next week", "Next Week"), "2024-03-01T11:00:00.000Z", offset=1)
    cluster, founded, events = assign_exact(None, first)
    assert founded == {"id": cluster_id_for("a1"), "canonical_id": "a1", "similarity": 1.0, "match": "new"}
    assert [event.type for event in events] == ["created"]
    cluster, joined, events = assign_exact(cluster, copy)
    assert joined == {"id": cluster_id_for("a1"), "canonical_id": "a1", "similarity": 1.0, "match": "exact"}
    assert [(event.type, event.article_id) for event in events] == [("joined", "a2")]


def test_canonical_is_the_earliest_published_even_when_it_arrives_later():
    later = make_article("late", STORY, "2024-03-02T00:00:00.000Z", offset=0)
    earlier = make_article("early", STORY, "2024-03-01T00:00:00.000Z", offset=1)
    cluster, _, _ = assign_exact(None, later)
    _, assignment, _ = assign_exact(cluster, earlier)
    assert assignment["id"] == cluster_id_for("late")
    assert assignment["canonical_id"] == "early"


def test_arrival_breaks_a_published_at_tie():
    one = make_article("b", STORY, "2024-03-01T00:00:00.000Z", offset=7)
    two = make_article("a", STORY, "2024-03-01T00:00:00.000Z", offset=8)
    assert sort_key(one) < sort_key(two)


def test_redelivery_gives_the_same_assignment_and_no_event():
    first = make_article("a1", STORY, offset=0)
    copy = make_article("a2", STORY, offset=1)
    cluster, _, _ = assign_exact(None, first)
    cluster, joined, _ = assign_exact(cluster, copy)
    unchanged, again, events = assign_exact(cluster, copy)
    assert again == joined and events == [] and unchanged == cluster


def test_pipeline_clusters_exact_copies_and_keeps_other_texts_apart():
    articles = [
        make_article("a1", STORY, "2024-03-01T10:00:00.000Z", offset=0),
        make_article("a2", "“" + STORY + "”", "2024-03-01T09:00:00.000Z", offset=1),
        make_article("b1", "A different story about the weather.", offset=2),
        make_article("a1", STORY, "2024-03-01T10:00:00.000Z", offset=3),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        clustered, events, dead = (pipeline | beam.Create(articles)) | ClusterSyndicated()
        assert_that(
            clustered | "Assignments" >> beam.Map(lambda a: (a.article_id, a.fields["cluster"]["id"])),
            equal_to([("a1", cluster_id_for("a1")), ("a2", cluster_id_for("a1")),
                      ("b1", cluster_id_for("b1")), ("a1", cluster_id_for("a1"))]),
            label="AssignmentsMatch",
        )
        assert_that(
            events | "Types" >> beam.Map(lambda e: (e.type, e.article_id, e.cluster_id)),
            equal_to([("created", "a1", cluster_id_for("a1")), ("joined", "a2", cluster_id_for("a1")),
                      ("created", "b1", cluster_id_for("b1"))]),
            label="EventsMatch",
        )
        assert_that(dead, equal_to([]), label="NoDeadLetters")
