"""The shapes that travel between pipeline stages.

Events on the wire are JSON (see the `*.v1.json` documents beside this file);
between stages an article travels as an `Article`, which keeps the source
record it came from so that any stage can dead-letter it with the original
bytes and coordinates.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple, Required, TypedDict, TypeVar


class SourceRecord(NamedTuple):
    """One input record: a Kafka record, or one line of a JSONL file.

    For files, `topic` is the file path, `partition` is 0 and `offset` is the
    zero-based line number. A named tuple rather than a frozen dataclass: the
    reader builds one per record, and a tuple is built in half the time.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class DeadLetterReason(str, enum.Enum):
    """Machine-readable dead-letter causes; mirrors `dead_letter.v1.json`."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    EMPTY_TEXT = "empty_text"
    BINARY_CONTENT = "binary_content"
    UNDECODABLE_HTML = "undecodable_html"
    STAGE_ERROR = "stage_error"


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    detail: str
    stage: str
    source: SourceRecord
    article_id: str | None = None


class Rejected(ValueError):
    """Raised by a stage's pure functions when an input cannot be processed.

    The stage's DoFn turns it into a `DeadLetter`; it never escapes a stage.
    """

    def __init__(self, reason: DeadLetterReason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class Content:
    """What the normalise stage makes of an article: the enriched event's content properties."""

    article_id: str
    url: str | None
    canonical_url: str | None
    source: str | None
    title: str | None
    byline: str | None
    published_at: str | None  # RFC 3339 UTC, None when the feed's could not be read
    published_at_raw: str | None  # what the feed sent
    text: str
    word_count: int
    boilerplate_removed: dict[str, int]


_CONTENT_PROPERTIES = tuple(field.name for field in dataclasses.fields(Content))


class LanguageTag(TypedDict, total=False):
    """The `language` object of `enriched_article.v1.json`, as the language stage sets it."""

    code: Required[str]
    confidence: Required[float]
    alternatives: list[dict[str, Any]]
    hint: str | None
    detector: str


class ClusterEvidence(TypedDict):
    matched_id: str
    shared: float
    passages: list[list[int]]


class Cluster(TypedDict, total=False):
    """The `cluster` object of `enriched_article.v1.json`, as the syndication stage sets it."""

    id: Required[str]
    canonical_id: Required[str]
    similarity: Required[float]
    match: Required[str]
    evidence: ClusterEvidence


@dataclasses.dataclass(frozen=True, slots=True)
class Article:
    """An article in flight.

    `raw` is the validated input event; each stage adds its part of the
    enriched event: normalise the `content`, language the `language`,
    syndication the `cluster` (None until then). `event_properties` puts
    them together, in the one place that knows the event's shape.
    """

    source: SourceRecord
    raw: dict[str, Any]
    content: Content | None = None
    language: LanguageTag | None = None
    cluster: Cluster | None = None

    @property
    def article_id(self) -> str:
        return self.raw["id"]

    @property
    def normalised(self) -> Content:
        """`content`, which every stage after normalise relies on."""
        return _set_by(self.content, "content", "normalise", self)

    @property
    def language_tag(self) -> LanguageTag:
        """`language`, which every stage after the language stage relies on."""
        return _set_by(self.language, "language", "language", self)

    @property
    def assigned_cluster(self) -> Cluster:
        """`cluster`, which every stage after syndication relies on."""
        return _set_by(self.cluster, "cluster", "syndication", self)

    def with_content(self, content: Content) -> Article:
        return dataclasses.replace(self, content=content)

    def with_language(self, language: LanguageTag) -> Article:
        return dataclasses.replace(self, language=language)

    def with_cluster(self, cluster: Cluster) -> Article:
        return dataclasses.replace(self, cluster=cluster)

    def event_properties(self) -> dict[str, Any]:
        """The enriched event's properties the stages set (what `enriched_article.v1.json` adds to them is the
        codec's); the content's only up to the stage the article has been through."""
        properties: dict[str, Any] = (
            {} if self.content is None else {name: getattr(self.content, name) for name in _CONTENT_PROPERTIES}
        )
        if self.language is not None:
            properties["language"] = self.language
        if self.cluster is not None:
            properties["cluster"] = self.cluster
        return properties

    @classmethod
    def from_event_properties(cls, source: SourceRecord, raw: dict[str, Any], properties: dict[str, Any]) -> Article:
        """The article whose `event_properties` are `properties` (as a stage's state keeps it)."""
        content = {name: value for name, value in properties.items() if name not in ("language", "cluster")}
        return cls(
            source, raw, Content(**content) if content else None, properties.get("language"), properties.get("cluster")
        )


Part = TypeVar("Part")


def _set_by(part: Part | None, name: str, stage: str, article: Article) -> Part:
    if part is None:
        raise ValueError(f"article {article.article_id} has no {name}: the {stage} stage did not run before this one")
    return part


class OfArticle:
    """A message about one article in flight (mixed into a stage's message that holds the `article`): the record
    and id a dead letter of it names."""

    __slots__ = ()
    article: Article

    @property
    def source(self) -> SourceRecord:
        return self.article.source

    @property
    def article_id(self) -> str:
        return self.article.article_id


@dataclasses.dataclass(frozen=True, slots=True)
class Story:
    """The whole current state of one story; encoded per `story.v1.json`."""

    story_id: str
    record: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEvent:
    """A change to a syndication cluster; encoded per `cluster_event.v1.json`."""

    type: str  # created | joined | merged
    cluster_id: str
    article_id: str
    canonical_id: str
    similarity: float | None = None
    match: str | None = None
    merged_from: str | None = None
    merged_into: str | None = None
