import random
from pathlib import Path

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from wirecopy.schemas import codec
from wirecopy.schemas.records import Article, ClusterEvent, Rejected, SourceRecord, Story
from wirecopy.transforms import stories
from wirecopy.transforms.stage import StateVersionError
from benchmarks.in_order import InOrder
from wirecopy.transforms import syndication as syn
from wirecopy.transforms.normalise import draft_article, finish

from articles import content
from test_syndication import OTHER, STORY, make_article, sample_records


def article(article_id: str, cluster_id: str, match: str = "new", published_at: str | None = None) -> Article:
    record = SourceRecord("articles.raw", 0, 0, b"{}", timestamp_ms=1_900_000_000_000)  # after every published_at
    return Article(
        record,
        {"id": article_id},
        content(article_id, title=f"title of {article_id}", published_at=published_at),
        {"code": "en", "confidence": 1.0},
        {"id": cluster_id, "canonical_id": article_id, "similarity": 1.0, "match": match},
    )


def play(outcomes) -> tuple[stories.StoryTable, list[Story]]:
    shards: dict[int, stories.StoryShard] = {}
    table, emitted = stories.StoryTable(), []
    for outcome in outcomes:
        for update in stories.updates_of(outcome):
            key = stories.story_shard(update.story_id)
            shards[key], records = stories.story_step(shards.get(key), update)
            for story in records:
                table.apply(story.record)
            emitted += records
    return table, emitted


def test_a_story_record_holds_the_whole_story_and_validates_against_its_schema():
    table, emitted = play(
        [
            article("a", "c-1", published_at="2026-03-01T10:00:00.000Z"),
            article("b", "c-1", "near", published_at="2026-03-01T09:00:00.000Z"),
        ]
    )
    record = table.records["c-1"]
    assert [m["article_id"] for m in record["members"]] == ["a", "b"]
    assert record["canonical_id"] == "b" and record["first_seen"] == "2026-03-01T09:00:00.000Z"
    assert record["status"] == "active" and record["member_count"] == 2
    for story in emitted:
        codec.encode(codec.story(story, codec.now_timestamp()), codec.STORY)


def test_a_redelivered_article_changes_nothing():
    _, emitted = play([article("a", "c-1"), article("a", "c-1")])
    assert len(emitted) == 1


def test_an_absorbed_story_keeps_its_members_and_resolves_to_the_absorbing_one():
    merged = ClusterEvent("merged", "c-1", "x", "a", merged_from="c-2", merged_into="c-1")
    table, _ = play([article("a", "c-1"), article("b", "c-2"), merged, article("c", "c-2", "near")])
    assert table.records["c-2"]["status"] == "absorbed" and table.records["c-2"]["absorbed_into"] == "c-1"
    assert table.records["c-1"]["absorbed"] == ["c-2"]
    assert table.resolve("c-2") == "c-1"
    assert table.story_of() == {"a": "c-1", "b": "c-1", "c": "c-1"}
    assert sorted(m["article_id"] for m in table.stories()["c-1"]) == ["a", "b", "c"]


def test_member_lists_are_capped_and_counted():
    table, _ = play([article(f"a{i}", "c-1", "near") for i in range(stories.MAX_MEMBERS + 5)])
    assert len(table.records["c-1"]["members"]) == stories.MAX_MEMBERS
    assert table.records["c-1"]["member_count"] == stories.MAX_MEMBERS + 5


def test_stories_not_updated_for_the_horizon_leave_the_state():
    old = article("old", "c-old", published_at="2026-01-01T00:00:00.000Z")
    new = article("new", "c-new", published_at="2026-03-01T00:00:00.000Z")
    shard, _ = stories.story_step(None, stories.updates_of(old)[0])
    shard, _ = stories.story_step(shard, stories.updates_of(new)[0])
    assert set(shard.stories) == {"c-new"}


def test_first_and_last_seen_count_members_past_the_capped_list():
    listed = [
        article(f"a{i}", "c-1", "near", f"2026-01-{10 + i % 10:02d}T00:00:00.000Z") for i in range(stories.MAX_MEMBERS)
    ]
    early = article("early", "c-1", "near", "2026-01-01T00:00:00.000Z")
    late = article("late", "c-1", "near", "2026-01-28T00:00:00.000Z")
    table, _ = play([*listed, early, late])
    record = table.records["c-1"]
    assert {"early", "late"}.isdisjoint(m["article_id"] for m in record["members"])
    assert (record["first_seen"], record["last_seen"]) == ("2026-01-01T00:00:00.000Z", "2026-01-28T00:00:00.000Z")


def test_the_state_coder_round_trips_and_refuses_a_newer_version():
    coder = stories.StoryShardCoder()
    shard, _ = stories.story_step(None, stories.updates_of(article("a", "c-1"))[0])
    assert coder.decode(coder.encode(shard)) == shard
    encoded = orjson.loads(coder.encode(shard))
    encoded["version"] = stories.STATE_VERSION + 1
    with pytest.raises(StateVersionError, match=f"story state version {stories.STATE_VERSION + 1}: this code reads"):
        coder.decode(orjson.dumps(encoded))


def test_a_version_1_state_loads_with_first_and_last_seen_over_its_listed_members_and_moves_on():
    """tests/fixtures/story_state_v1.json: a shard as version 1 (commit 207d834) encoded it, written by that
    commit's code (tests/fixtures/story_state_v1.py). c-big had 102 members, the two past the cap the earliest and
    the latest: version 1 kept neither, so first and last seen come from the 100 it listed."""
    data = (Path(__file__).parent / "fixtures" / "story_state_v1.json").read_bytes().strip()
    assert orjson.loads(data)["version"] == 1
    shard = stories.StoryShardCoder().decode(data)
    big = shard.stories["c-big"]
    assert (len(big.members), big.member_count) == (stories.MAX_MEMBERS, stories.MAX_MEMBERS + 2)
    assert (big.first_seen, big.last_seen) == ("2026-01-10T00:00:00.000Z", "2026-01-19T00:00:00.000Z")
    small = shard.stories["c-small"]
    assert (small.first_seen, small.last_seen) == ("2026-01-05T00:00:00.000Z", "2026-01-06T00:00:00.000Z")
    later = article("after-upgrade", "c-big", "near", "2026-01-29T00:00:00.000Z")
    shard, (story,) = stories.story_step(shard, stories.updates_of(later)[0])
    assert (story.record["first_seen"], story.record["last_seen"]) == (
        "2026-01-10T00:00:00.000Z",
        "2026-01-29T00:00:00.000Z",
    )
    assert story.record["member_count"] == stories.MAX_MEMBERS + 3
    assert orjson.loads(stories.StoryShardCoder().encode(shard))["version"] == stories.STATE_VERSION == 2


def _sample_stories(order_seed: int | None) -> set[frozenset[str]]:
    """The sample articles' story memberships (from story records only), in file order or shuffled."""
    records = sample_records()
    if order_seed is not None:
        random.Random(order_seed).shuffle(records)
        records = [
            Article(SourceRecord(r.source.topic, 0, offset, r.source.value, timestamp_ms=1_000 * offset), r.raw)
            for offset, r in enumerate(records)
        ]
    stream = InOrder()
    outcomes = []
    for record in records:
        try:
            prepared = finish(draft_article(record)).with_language({"code": "und", "confidence": 0.0})
        except Rejected:  # dead letters, not members
            continue
        stream.send(prepared)
    for article_id, cluster in stream.clusters.items():
        outcomes.append(article(article_id, cluster["id"]))
    outcomes += [e for e in stream.events if e.type == "merged"]
    table, _ = play(outcomes)
    return {frozenset(m["article_id"] for m in members) for members in table.stories().values()}


# Known exception: this excerpt keeps its site's chrome (its source appears once, so the normalise stage cannot
# learn the template) and under half of its text is the story; when it arrives before the version it copies,
# it is mostly no story, and nothing later proves it one without also letting a digest chain stories.
ORDER_DEPENDENT = frozenset({"novostidnya-7712093"})


def _without(stories_found: set[frozenset[str]], articles: frozenset[str]) -> set[frozenset[str]]:
    return {members - articles for members in stories_found if members - articles}


def test_sample_story_memberships_do_not_depend_on_arrival_order():
    in_file_order = _sample_stories(None)
    assert any(len(members) > 2 for members in in_file_order)
    for seed in range(12):
        assert _without(_sample_stories(seed), ORDER_DEPENDENT) == _without(in_file_order, ORDER_DEPENDENT), seed


def test_pipeline_on_the_local_runner_emits_story_records_beside_everything_else():
    outcomes = [
        make_article("one", STORY, offset=0, timestamp_ms=1),
        make_article("two", STORY.replace("Tuesday", "Wednesday"), offset=1, timestamp_ms=2),
        make_article("three", OTHER, offset=2, timestamp_ms=3),
    ]

    def check(results):
        table = stories.StoryTable()
        for story in (r for r in results if isinstance(r, Story)):
            table.apply(story.record)
        groups = sorted(sorted(m["article_id"] for m in members) for members in table.stories().values())
        assert groups == [["one", "two"], ["three"]]
        assert sum(isinstance(r, Article) for r in results) == 3

    with TestPipeline(runner="FnApiRunner") as pipeline:
        results = pipeline | beam.Create(outcomes, reshuffle=False) | syn.ClusterSyndicated() | stories.TrackStories()
        assert_that(results, check)
