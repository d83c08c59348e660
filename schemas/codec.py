"""Decode, validate and encode wirecopy events with orjson.

Validation uses the JSON Schema documents beside this module, compiled once
per process by fastjsonschema, so the documents are the one source of truth.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import importlib.resources
from typing import Any, Callable

import fastjsonschema
import orjson

from wirecopy.schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected, Story

SCHEMA_VERSION = 1
RAW_ARTICLE = "raw_article.v1.json"
ENRICHED_ARTICLE = "enriched_article.v1.json"
CLUSTER_EVENT = "cluster_event.v1.json"
DEAD_LETTER = "dead_letter.v1.json"
STORY = "story.v1.json"

DEFAULT_MAX_RECORD_BYTES = 10 * 1024 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"


def load_schema(name: str) -> dict[str, Any]:
    return orjson.loads(importlib.resources.files("wirecopy.schemas").joinpath(name).read_bytes())


@functools.cache
def validator(name: str) -> Callable[[Any], Any]:
    """The compiled validator for one schema document (compiled once per process)."""
    return fastjsonschema.compile(load_schema(name))


def utc_timestamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. `2026-11-23T06:00:00.000Z`."""
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_timestamp() -> str:
    return utc_timestamp(dt.datetime.now(dt.timezone.utc))


def decode_raw_article(
    value: bytes, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, dropped: list[str] | None = None
) -> dict[str, Any]:
    """Parse and validate one raw article; raise `Rejected` with the reason.

    An optional property that cannot be read is left out of the article (not
    a reason to reject it), and its name appended to `dropped`.
    """
    if len(value) > max_bytes:
        raise Rejected(
            DeadLetterReason.PAYLOAD_TOO_LARGE, f"record is {len(value):,} bytes; the limit is {max_bytes:,}"
        )
    if value.startswith(_UTF8_BOM):
        value = value[len(_UTF8_BOM) :]
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as encoding_error:
            raise Rejected(DeadLetterReason.INVALID_ENCODING, f"not UTF-8: {encoding_error}") from None
        raise Rejected(DeadLetterReason.INVALID_JSON, str(error)) from None
    try:
        validator(RAW_ARTICLE)(event)
    except fastjsonschema.JsonSchemaValueException as error:
        return _without_unreadable_properties(event, error, dropped)
    return event


# Optional properties whose unreadable value costs the property, not the article (raw_article.v1.json says so).
DROPPABLE_PROPERTIES = ("url", "source", "title", "published_at", "language")


@functools.cache
def _property_validators() -> dict[str, Callable[[Any], Any]]:
    properties = load_schema(RAW_ARTICLE)["properties"]
    return {name: fastjsonschema.compile(properties[name]) for name in DROPPABLE_PROPERTIES}


def _readable(name: str, value: Any) -> bool:
    try:
        _property_validators()[name](value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _without_unreadable_properties(
    event: Any, error: fastjsonschema.JsonSchemaValueException, dropped: list[str] | None
) -> dict[str, Any]:
    """`event` without its unreadable optional properties, if that makes it valid; else `Rejected`."""
    unreadable = [
        name
        for name in DROPPABLE_PROPERTIES
        if isinstance(event, dict) and name in event and not _readable(name, event[name])
    ]
    if not unreadable:
        raise Rejected(DeadLetterReason.SCHEMA_VIOLATION, error.message)
    event = {name: value for name, value in event.items() if name not in unreadable}
    try:
        validator(RAW_ARTICLE)(event)
    except fastjsonschema.JsonSchemaValueException as remaining:
        raise Rejected(DeadLetterReason.SCHEMA_VIOLATION, remaining.message) from None
    if dropped is not None:
        dropped.extend(unreadable)
    return event


def enriched_article(article: Article, processed_at: str) -> dict[str, Any]:
    """The enriched event for an article that went through every stage."""
    source = article.source
    return {
        "schema_version": SCHEMA_VERSION,
        **article.event_properties(),
        "processed_at": processed_at,
        "ingest": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
    }


def cluster_event(event: ClusterEvent, occurred_at: str) -> dict[str, Any]:
    encoded = {
        "schema_version": SCHEMA_VERSION,
        "event_id": ":".join(
            part for part in (event.type, event.cluster_id, event.article_id, event.merged_from) if part
        ),
        "type": event.type,
        "cluster_id": event.cluster_id,
        "article_id": event.article_id,
        "canonical_id": event.canonical_id,
        "occurred_at": occurred_at,
    }
    if event.similarity is not None:
        encoded["similarity"] = event.similarity
    if event.match is not None:
        encoded["match"] = event.match
    if event.merged_from is not None:
        encoded["from"] = event.merged_from
        encoded["into"] = event.merged_into
    return encoded


def story(story: Story, updated_at: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **story.record, "updated_at": updated_at}


def dead_letter(letter: DeadLetter, failed_at: str, max_bytes: int | None = None) -> dict[str, Any]:
    """The dead-letter event; with `max_bytes`, the payload is cut so that the
    encoded event fits (`payload_truncated`, `payload_bytes` say so): the
    topic, partition and offset still lead back to the whole record."""
    source = letter.source
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "reason": letter.reason.value,
        "detail": letter.detail,
        "stage": letter.stage,
        "payload": base64.b64encode(source.value).decode("ascii"),
        "key": None if source.key is None else base64.b64encode(source.key).decode("ascii"),
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "timestamp": source.timestamp_ms,
        "headers": [{"key": name, "value": base64.b64encode(value).decode("ascii")} for name, value in source.headers],
        "article_id": letter.article_id,
        "failed_at": failed_at,
    }
    # Sized without encoding the payload twice: base64 needs no JSON escaping.
    if max_bytes is not None and len(orjson.dumps({**event, "payload": ""})) + len(event["payload"]) > max_bytes:
        cut = {**event, "payload": "", "payload_truncated": True, "payload_bytes": len(source.value)}
        room = max(max_bytes - len(orjson.dumps(cut)), 0)
        cut["payload"] = base64.b64encode(source.value[: room // 4 * 3]).decode("ascii")
        event = cut
    return event


def encode(event: dict[str, Any], schema: str) -> bytes:
    """Validate an outgoing event against its schema and serialise it.

    An invalid outgoing event is a bug in a stage, so it raises instead of
    being written.
    """
    validator(schema)(event)
    return orjson.dumps(event)
