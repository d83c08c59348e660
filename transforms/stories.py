"""Story view: each story's whole current state, for the compacted story topic.

Outcomes in, outcomes out (see `wirecopy.transforms.stage`): after the
syndication stage, every `Article` (with its `cluster`) and every `merged`
`ClusterEvent` updates the story it names, and a `Story` outcome with the
story's whole current state joins the stream; everything passes through.
A consumer then reads one record per story (the topic is compacted, keyed by
story id) instead of replaying the cluster topic through a union-find.

A story's id is the `cluster.id` its articles carry. When a `merged` event
absorbs story `from` into `into`, `from`'s record turns `absorbed` (with
`absorbed_into`) and keeps its member list, and `into`'s record lists `from`
among `absorbed`: the records are keyed by their own story, so a member of
`from` is found under `from` after compaction too, and `resolve` (or
`StoryTable`) follows `absorbed_into` to the story that carries it now.
Absorbed records are kept rather than tombstoned: they are how an article
that carries the old id finds its story, as long as any consumer may hold one.

State is folded into `STORY_SHARDS` shards keyed by story id and pruned on
access: a story not updated for the horizon (by its shard's clock, the newest
event time it has seen) is final and dropped from state. A story lists at
most `MAX_MEMBERS` members (the first to join); `member_count`, `first_seen`
and `last_seen` count every member, listed or not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any, Iterator, Mapping

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.schemas import codec
from wirecopy.schemas.records import Article, ClusterEvent, SourceRecord, Story
from wirecopy.transforms.stage import Outcome, StatefulStep, Step, opened, upgraded, within_horizon
from wirecopy.transforms.syndication import event_ms, sort_key

STAGE = "Stories"
STORY_SHARDS = 1 << 16
# Wire stories are picked up by tens of outlets at most in the corpus; a list
# past this is a sign of a template or a feed loop, and each update re-sends it.
MAX_MEMBERS = 100
DEFAULT_HORIZON_MS = 7 * 24 * 3600 * 1000
# 2: a story's state keeps its first and last seen times over every member (version 1 took them from the listed
# members only, so a member past MAX_MEMBERS never moved them).
STATE_VERSION = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """An article's membership, for its story's shard."""

    story_id: str
    member: dict[str, Any]
    event_ms: int
    source: SourceRecord  # the article's record, for a dead letter should its story's update fail

    @property
    def article_id(self) -> str:
        return self.member["article_id"]


@dataclasses.dataclass(frozen=True, slots=True)
class Absorb:
    """One side of a `merged` event: `story_id` absorbed into `into`, or `story_id` absorbing `other`."""

    story_id: str
    other: str
    absorbed: bool  # True at the absorbed story's shard, False at the absorbing one's
    event_ms: int


@dataclasses.dataclass(slots=True)
class StoryState:
    members: list[dict[str, Any]]
    member_count: int
    absorbed_into: str | None
    absorbed: list[str]
    since_ms: int  # the shard's clock when the story last changed
    first_seen: str  # the earliest and latest member time, over every member (listed or past MAX_MEMBERS)
    last_seen: str

    def record(self, story_id: str) -> dict[str, Any]:
        """The story's record as `story.v1.json` has it (without `schema_version` and `updated_at`)."""
        canonical = min(self.members, key=_canonical_order)
        return {
            "story_id": story_id,
            "status": "absorbed" if self.absorbed_into else "active",
            "absorbed_into": self.absorbed_into,
            "absorbed": list(self.absorbed),
            "canonical_id": canonical["article_id"],
            "title": canonical.get("title"),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "member_count": self.member_count,
            "members": list(self.members),
        }


def _member_time(member: Mapping[str, Any]) -> str:
    return member.get("published_at") or member["joined_at"]


def _canonical_order(member: Mapping[str, Any]) -> tuple[str, str]:
    return _member_time(member), member["article_id"]


def member_of(article: Article) -> dict[str, Any]:
    """An article's entry in its story's member list."""
    content, cluster = article.normalised, article.assigned_cluster
    member: dict[str, Any] = {
        "article_id": article.article_id,
        "source": content.source,
        "url": content.url,
        "title": content.title,
        "language": article.language_tag["code"],
        "published_at": content.published_at,
        "match": cluster["match"],
        "similarity": cluster["similarity"],
        "joined_at": codec.utc_timestamp(dt.datetime.fromtimestamp(_event_ms(article) / 1000, dt.timezone.utc)),
    }
    if "evidence" in cluster:
        member["evidence"] = cluster["evidence"]
    return member


def _event_ms(article: Article) -> int:
    """The article's event time as the syndication stage reckons it (published_at, never after the record)."""
    return event_ms(sort_key(article))


def updates_of(outcome: Outcome) -> list[Join | Absorb]:
    """What an outcome of the syndication stage changes in the story view."""
    if isinstance(outcome, Article) and outcome.cluster is not None:
        return [Join(outcome.cluster["id"], member_of(outcome), _event_ms(outcome), outcome.source)]
    if (
        isinstance(outcome, ClusterEvent)
        and outcome.type == "merged"
        and outcome.merged_from
        and outcome.merged_into
        and outcome.merged_from != outcome.merged_into
    ):
        return [
            Absorb(outcome.merged_from, outcome.merged_into, True, 0),
            Absorb(outcome.merged_into, outcome.merged_from, False, 0),
        ]
    return []


@dataclasses.dataclass(frozen=True, slots=True)
class StoryShard:
    stories: dict[str, StoryState]
    newest_ms: int


def story_step(
    shard: StoryShard | None, update: Join | Absorb, horizon_ms: int = DEFAULT_HORIZON_MS
) -> tuple[StoryShard, list[Story]]:
    """The shard after `update`, and the story record it changed (none if nothing changed)."""
    stories, newest_ms = opened(shard.stories if shard else None, shard.newest_ms if shard else None, update.event_ms)
    known = stories.get(update.story_id)
    if isinstance(update, Join):
        seen = _member_time(update.member)
        if known is None:
            known = StoryState([], 0, None, [], newest_ms, seen, seen)
        elif any(m["article_id"] == update.member["article_id"] for m in known.members):
            return _pruned(stories, newest_ms, horizon_ms), []  # redelivered: nothing changed
        else:
            known = dataclasses.replace(
                known,
                members=list(known.members),
                since_ms=newest_ms,
                first_seen=min(known.first_seen, seen),
                last_seen=max(known.last_seen, seen),
            )
        if len(known.members) < MAX_MEMBERS:
            known.members.append(update.member)
        known.member_count += 1
    elif known is None or not known.members:
        return _pruned(stories, newest_ms, horizon_ms), []  # a root no article was assigned to here
    elif update.absorbed:
        # Already so, or the other way round (two places found the same union; the first one stands).
        if known.absorbed_into == update.other or update.other in known.absorbed:
            return _pruned(stories, newest_ms, horizon_ms), []
        known = dataclasses.replace(known, absorbed_into=update.other, since_ms=newest_ms)
    else:
        if update.other in known.absorbed or known.absorbed_into == update.other:
            return _pruned(stories, newest_ms, horizon_ms), []
        known = dataclasses.replace(known, absorbed=[*known.absorbed, update.other], since_ms=newest_ms)
    stories[update.story_id] = known
    return _pruned(stories, newest_ms, horizon_ms), [Story(update.story_id, known.record(update.story_id))]


def _pruned(stories: dict[str, StoryState], newest_ms: int, horizon_ms: int) -> StoryShard:
    return StoryShard(within_horizon(stories, newest_ms, horizon_ms), newest_ms)


def story_shard(story_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(story_id.encode("utf-8"), digest_size=8).digest(), "little") % STORY_SHARDS


class StoryShardCoder(beam.coders.Coder):
    """A shard's stories as versioned JSON: readable across code changes (a savepoint survives an upgrade),
    unlike pickled classes, which break when a class is renamed, moved or gains a field."""

    def encode(self, shard: StoryShard) -> bytes:
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "newest_ms": shard.newest_ms,
                "stories": {k: dataclasses.asdict(v) for k, v in shard.stories.items()},
            }
        )

    def decode(self, data: bytes) -> StoryShard:
        stored = orjson.loads(data)
        state = upgraded("story", stored, stored["version"], STATE_VERSION, _MIGRATIONS)
        return StoryShard({k: StoryState(**v) for k, v in state["stories"].items()}, state["newest_ms"])

    def is_deterministic(self) -> bool:
        return False


def _seen_over_listed_members(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: first and last seen over the listed members, all that version 1 kept of them (its records
    gave these same times)."""
    stories = {}
    for story_id, story in state["stories"].items():
        times = [_member_time(m) for m in story["members"]]
        stories[story_id] = {**story, "first_seen": min(times), "last_seen": max(times)}
    return {**state, "version": 2, "stories": stories}


_MIGRATIONS = {1: _seen_over_listed_members}


def _story_key(message: Any) -> int:
    """A story update goes to its story's shard; everything else passes through its article's."""
    if isinstance(message, (Join, Absorb)):
        return story_shard(message.story_id)
    return story_shard(getattr(message, "article_id", None) or "")


class _KeyFn(Step[Article | ClusterEvent]):
    """Articles and cluster events, each followed by the story updates they make."""

    stage, handles = STAGE, (Article, ClusterEvent)

    def key_output(self, message: Any) -> int:
        return _story_key(message)

    def handle(self, key: Any, outcome: Article | ClusterEvent) -> list[Any]:
        return [*updates_of(outcome), outcome]


class _StoriesFn(StatefulStep[Join | Absorb, StoryShard]):
    stage, handles = STAGE, (Join, Absorb)
    SHARD = ReadModifyWriteStateSpec("stories", StoryShardCoder())

    def __init__(self, horizon_ms: int):
        self._horizon_ms = horizon_ms
        self._updated = Metrics.counter("wirecopy", "stories_updated")

    def process(self, keyed: tuple[int, Any], shard_state=beam.DoFn.StateParam(SHARD)) -> Iterator[Outcome]:
        return self.route(keyed, shard_state)

    def step(self, shard: StoryShard | None, update: Join | Absorb) -> tuple[StoryShard, list[Story]]:
        shard, stories = story_step(shard, update, self._horizon_ms)
        self._updated.inc(len(stories))
        return shard, stories


class TrackStories(beam.PTransform):
    """Outcomes in, outcomes out: a `Story` with the whole current state of each story an outcome changed.

    Example::

        outcomes | "Syndication" >> ClusterSyndicated() | "Stories" >> TrackStories()
    """

    def __init__(self, horizon: dt.timedelta = dt.timedelta(milliseconds=DEFAULT_HORIZON_MS)):
        super().__init__()
        self._horizon_ms = int(horizon.total_seconds() * 1000)

    def expand(self, outcomes):
        return (
            outcomes
            | "KeyByStory" >> beam.ParDo(_KeyFn()).with_output_types(tuple[int, Any])
            | "UpdateStories" >> beam.ParDo(_StoriesFn(self._horizon_ms))
        )


# --- for consumers ------------------------------------------------------------


class StoryTable:
    """Stories as a consumer of the story topic holds them: the last record per story id.

    `apply` each record read from the topic (compacted or not; in order per
    key); `resolve` a story id an article carries to the story that carries it
    now; `stories` gives every current story with all its members. Stories
    are one when records link them (`absorbed_into`, `absorbed`), also through
    an id that only links (a provisional id absorbed from two sides); the
    current story of a group is its smallest active story id.
    """

    def __init__(self):
        self.records: dict[str, dict[str, Any]] = {}

    def apply(self, record: Mapping[str, Any]) -> None:
        self.records[record["story_id"]] = dict(record)

    def _groups(self) -> dict[str, str]:
        parent: dict[str, str] = {}

        def find(story_id: str) -> str:
            parent.setdefault(story_id, story_id)
            while parent[story_id] != story_id:
                parent[story_id] = parent[parent[story_id]]
                story_id = parent[story_id]
            return story_id

        for story_id, record in self.records.items():
            for linked in [record.get("absorbed_into"), *record.get("absorbed", ())]:
                if linked:
                    parent[find(linked)] = find(story_id)
        current: dict[str, str] = {}
        for story_id in sorted(set(parent) | set(self.records)):
            root = find(story_id)
            active = self.records.get(story_id, {}).get("status") == "active"
            if active and (root not in current or story_id < current[root]):
                current[root] = story_id
        return {story_id: current.get(find(story_id), find(story_id)) for story_id in set(parent) | set(self.records)}

    def resolve(self, story_id: str) -> str:
        return self._groups().get(story_id, story_id)

    def story_of(self) -> dict[str, str]:
        """Each listed member's current story id."""
        groups = self._groups()
        return {
            member["article_id"]: groups[story_id]
            for story_id, record in self.records.items()
            for member in record["members"]
        }

    def stories(self) -> dict[str, list[dict[str, Any]]]:
        """Current story id → its members (of every story absorbed into it as well)."""
        groups = self._groups()
        grouped: dict[str, list[dict[str, Any]]] = {}
        for story_id, record in self.records.items():
            grouped.setdefault(groups[story_id], []).extend(record["members"])
        return grouped
