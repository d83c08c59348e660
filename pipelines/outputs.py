"""A run's outputs read back as a consumer sees them: from the JSONL files of
file mode or from the output topics, each kind deduplicated by its key.

Delivery is at-least-once, so an enriched article or a dead letter can appear
twice; the story topic is compacted, so the last record of a story is the
story. Keeping the last record per key gives what a consumer keeps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson
from kafka import KafkaConsumer

from wirecopy.pipelines.local_broker import read_topic


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    articles: list[dict]
    stories: list[dict]
    cluster_events: list[dict]
    dead_letters: list[dict]
    origin: str  # where they were read, for the reader of the report


def last_per_key(records: Iterable[dict], key: Callable[[dict], Any]) -> list[dict]:
    """One record per key, the last one read, in the order the keys first appeared."""
    latest: dict[Any, dict] = {}
    for record in records:
        latest[key(record)] = record
    return list(latest.values())


def deduplicated(
    articles: Iterable[dict],
    stories: Iterable[dict],
    cluster_events: Iterable[dict],
    dead_letters: Iterable[dict],
    origin: str,
) -> RunOutputs:
    return RunOutputs(
        articles=last_per_key(articles, lambda a: a["article_id"]),
        stories=last_per_key(stories, lambda s: s["story_id"]),
        cluster_events=last_per_key(cluster_events, lambda e: e["event_id"]),
        dead_letters=last_per_key(dead_letters, lambda d: (d["topic"], d["partition"], d["offset"])),
        origin=origin,
    )


def read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as error:
                    raise ValueError(f"{path} line {number} is not JSON: {error}") from None
    return records


def from_files(
    articles: Path, stories: Path | None, cluster_events: Path | None, dead_letters: Path | None
) -> RunOutputs:
    """The files of a file-mode run; a kind whose path is None was not asked for."""
    paths = [articles, stories, cluster_events, dead_letters]
    found, story_records, event_records, letters = [read_jsonl(path) if path is not None else [] for path in paths]
    return deduplicated(
        found, story_records, event_records, letters, origin=", ".join(str(path) for path in paths if path is not None)
    )


def from_topics(
    bootstrap_servers: str,
    articles: str,
    stories: str | None,
    cluster_events: str | None,
    dead_letters: str | None,
    client_config: Mapping[str, Any],
) -> RunOutputs:
    """Every record of the output topics up to their high watermarks when read (a
    compacted topic's tombstones, records without a value, are no record)."""
    topics = [articles, stories, cluster_events, dead_letters]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, **client_config)
    try:
        missing = [topic for topic in topics if topic is not None and topic not in consumer.topics()]
    finally:
        consumer.close()
    if missing:  # read_topic would read a missing topic as an empty one
        raise ValueError(f"topics missing on {bootstrap_servers}: {', '.join(missing)}")
    found, story_records, event_records, letters = [
        [
            orjson.loads(record.value)
            for record in read_topic(bootstrap_servers, topic, **client_config)
            if record.value is not None
        ]
        if topic is not None
        else []
        for topic in topics
    ]
    return deduplicated(
        found,
        story_records,
        event_records,
        letters,
        origin=f"{bootstrap_servers}: " + ", ".join(t for t in topics if t is not None),
    )
