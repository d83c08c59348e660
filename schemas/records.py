"""The shapes that travel between pipeline stages.

Events on the wire are JSON (see the `*.v1.json` documents beside this file);
between stages an article travels as an `Article`, which keeps the source
record it came from so that any stage can dead-letter it with the original
bytes and coordinates.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple


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
class Article:
    """An article in flight.

    `raw` is the validated input event. `fields` accumulates the enriched
    event's properties stage by stage (normalise sets the content fields,
    language sets `language`, syndication sets `cluster`). `fingerprint` is
    the normalised matching form of the text that the syndication stage
    consumes; it is never emitted.
    """

    source: SourceRecord
    raw: dict[str, Any]
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def article_id(self) -> str:
        return self.raw["id"]

    def with_fields(self, fingerprint: str | None = None, **fields: Any) -> "Article":
        """A copy with `fields` merged in (stages never mutate their input)."""
        return dataclasses.replace(
            self,
            fields={**self.fields, **fields},
            fingerprint=self.fingerprint if fingerprint is None else fingerprint,
        )


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
