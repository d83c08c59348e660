"""Syndication stage (foundation): cluster exact copies of the same text.

Every article is keyed by a hash of its fingerprint (the normalised matching
form), and one stateful DoFn per content hash keeps the cluster of that text:
its id (derived from the article that founded it, so it never changes), its
canonical article (earliest by `published_at`, then arrival) and the
assignment of every article id it has seen, so a redelivered article gets the
same assignment again and no second `joined` event.

This is the foundation for issue 7 (near and contained copies); the interface
(`ClusterSyndicated`, its outputs and the cluster field) stays as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from schemas.records import Article, ClusterEvent
from transforms.stage import apply_stage

STAGE = "Syndication"


def content_hash(fingerprint: str) -> str:
    return hashlib.blake2b(fingerprint.encode("utf-8"), digest_size=16).hexdigest()


def cluster_id_for(founder_id: str) -> str:
    """The id of the cluster an article founds: deterministic, so redelivery and replays agree."""
    return "c-" + hashlib.blake2b(founder_id.encode("utf-8"), digest_size=10).hexdigest()


class SortKey(NamedTuple):
    """Orders articles by `published_at`, then arrival (record timestamp, then offset), then id."""

    event_ms: int
    arrival_ms: int
    offset: int
    article_id: str


def _epoch_ms(timestamp: str) -> int:
    return int(dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def sort_key(article: Article) -> SortKey:
    arrival_ms = article.source.timestamp_ms or 0
    published_at = article.fields.get("published_at")
    event_ms = _epoch_ms(published_at) if published_at else arrival_ms
    return SortKey(event_ms, arrival_ms, article.source.offset, article.article_id)


def assign_exact(cluster: dict[str, Any] | None, article: Article) -> tuple[dict[str, Any], dict[str, Any], list[ClusterEvent]]:
    """(new cluster state, the article's cluster field, events) for one article of one content hash.

    `cluster` is the state of this content hash's cluster, None for unseen text.
    """
    key = sort_key(article)
    if cluster is None:
        cluster = {"id": cluster_id_for(article.article_id), "canonical": key, "members": {}}
    known = cluster["members"].get(article.article_id)
    if known is not None:
        return cluster, known, []
    founding = not cluster["members"]
    canonical = min(cluster["canonical"], key)
    assignment = {
        "id": cluster["id"],
        "canonical_id": canonical.article_id,
        "similarity": 1.0,
        "match": "new" if founding else "exact",
    }
    event = ClusterEvent(
        type="created" if founding else "joined",
        cluster_id=cluster["id"],
        article_id=article.article_id,
        canonical_id=canonical.article_id,
        similarity=1.0,
        match=assignment["match"],
    )
    updated = {"id": cluster["id"], "canonical": canonical,
               "members": {**cluster["members"], article.article_id: assignment}}
    return updated, assignment, [event]


class _ExactClusterFn(beam.DoFn):
    CLUSTER = ReadModifyWriteStateSpec("cluster", PickleCoder())

    def __init__(self):
        self._created = Metrics.counter("wirecopy", "syndication_clusters_created")
        self._joined = Metrics.counter("wirecopy", "syndication_clusters_joined")
        self._redelivered = Metrics.counter("wirecopy", "syndication_redelivered")

    def process(self, keyed: tuple[str, Article], cluster_state=beam.DoFn.StateParam(CLUSTER)) -> Iterator[Any]:
        _, article = keyed
        updated, assignment, events = assign_exact(cluster_state.read(), article)
        if events:
            cluster_state.write(updated)
        else:
            self._redelivered.inc()
        for event in events:
            (self._created if event.type == "created" else self._joined).inc()
            Metrics.counter("wirecopy", f"syndication_match_{event.match}").inc()
            yield event
        yield article.with_fields(cluster=assignment)


def _key_by_content(article: Article) -> tuple[str, Article]:
    return content_hash(article.fingerprint or ""), article


class ClusterSyndicated(beam.PTransform):
    """Articles in; (articles with `cluster`, cluster events, dead letters) out."""

    def expand(self, articles):
        keyed = articles | "KeyByContent" >> beam.Map(_key_by_content)
        outputs, dead_letters = apply_stage(keyed, STAGE, _ExactClusterFn(), stateful=True)
        # apply_stage keeps one main output, so articles and events share it.
        clustered, events = outputs | "SplitEvents" >> beam.Partition(_article_or_event, 2)
        return clustered, events, dead_letters


def _article_or_event(element: Article | ClusterEvent, _partitions: int) -> int:
    return 0 if isinstance(element, Article) else 1
