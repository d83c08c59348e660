"""The syndication stage's pure functions in arrival order, as the local runner's fused steps run them.

For tests and benchmarks (not part of the pipeline): `send` one article
completely, or `deliver` single messages in any order to play workers racing
on a production runner.
"""

from __future__ import annotations

from typing import Any

from wirecopy.schemas.records import Article, ClusterEvent
from wirecopy.transforms.syndication import (
    DEFAULT_HORIZON_MS,
    Announcements,
    Bucket,
    Exposure,
    IndexQuery,
    Pending,
    Shard,
    Use,
    announce_step,
    fan_out,
    home_shard,
    home_step,
    index_step,
)


class InOrder:
    """Clusters, events and state of articles sent through the stage's steps one message at a time."""

    def __init__(self, horizon_ms: int = DEFAULT_HORIZON_MS):
        self.horizon_ms = horizon_ms
        self.buckets: dict[int, Bucket] = {}
        self.shards: dict[int, Shard] = {}
        self.announcers: dict[int, Announcements] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.events: list[ClusterEvent] = []

    def send(self, article: Article) -> dict[str, Any] | None:
        """Process one article completely; its cluster field."""
        for key, message in fan_out(article):
            self.deliver(key, message)
        return self.clusters.get(article.article_id)

    def deliver(self, key: int, message: Pending | IndexQuery) -> None:
        if isinstance(message, IndexQuery):
            self.buckets[key], message = index_step(self.buckets.get(key), message, key, self.horizon_ms)
            key = home_shard(message.article_id)
        self.shards[key], outputs = home_step(self.shards.get(key), message, self.horizon_ms)
        for output in outputs:
            if isinstance(output, (Exposure, Use)):
                announcer = home_shard(output.article_id)
                self.announcers[announcer], events = announce_step(
                    self.announcers.get(announcer), output, self.horizon_ms
                )
                self.events += events
            elif isinstance(output, ClusterEvent):
                self.events.append(output)
            else:
                self.clusters[output.article_id] = output.cluster

    def unions(self) -> dict[str, str]:
        """Each article's cluster as a consumer sees it after applying every `merged` event (union-find)."""
        parent: dict[str, str] = {}

        def find(cluster_id: str) -> str:
            while parent.get(cluster_id, cluster_id) != cluster_id:
                cluster_id = parent[cluster_id]
            return cluster_id

        for event in self.events:
            if event.type == "merged" and find(event.merged_from) != find(event.merged_into):
                parent[find(event.merged_from)] = find(event.merged_into)
        return {article_id: find(cluster["id"]) for article_id, cluster in self.clusters.items()}
