"""The bundled sample articles (`pipelines/samples/`) checked against their ground truth.

These tests read the files themselves; they run no pipeline. They make sure
every line either decodes or is a dead letter `expected.json` announces with
the right reason, and that `expected.json` only names records that exist.
"""

from __future__ import annotations

import functools
import itertools
import json
import pathlib
import unicodedata
from typing import Any

import pytest

from wirecopy.schemas.codec import decode_raw_article
from wirecopy.schemas.records import DeadLetterReason, Rejected

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "pipelines" / "samples"
NON_LATIN_LANGUAGES = {"ru", "uk", "bg", "sr", "el", "ja", "zh", "ko", "ar", "he", "hi", "th"}


@functools.cache
def lines() -> tuple[bytes, ...]:
    data = (SAMPLES / "articles.jsonl").read_bytes()
    assert data.endswith(b"\n"), "articles.jsonl must end with a newline"
    return tuple(data[:-1].split(b"\n"))


@functools.cache
def expected() -> dict[str, Any]:
    return json.loads((SAMPLES / "expected.json").read_text(encoding="utf-8"))


@functools.cache
def decoded() -> tuple[tuple[int, dict[str, Any] | None, Rejected | None], ...]:
    """(line number, event or None, rejection or None) for every line."""
    out = []
    for number, line in enumerate(lines()):
        try:
            out.append((number, decode_raw_article(line), None))
        except Rejected as rejection:
            out.append((number, None, rejection))
    return tuple(out)


def readable_id(line: bytes) -> str | None:
    """The record's id when a reader can get it: valid JSON with a string id."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return value["id"]
    return None


def dead_letter_key(number: int) -> str:
    return readable_id(lines()[number]) or f"line:{number}"


def blank(value: str | None) -> bool:
    """Nothing but whitespace and control characters."""
    return not value or all(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value)


@functools.cache
def good() -> dict[str, dict[str, Any]]:
    """Records that should come out of the pipeline enriched, by id."""
    dead = expected()["dead_letters"]
    return {event["id"]: event for _, event, _ in decoded() if event is not None and event["id"] not in dead}


def test_every_line_decodes_or_is_an_expected_dead_letter():
    dead = expected()["dead_letters"]
    for number, event, rejection in decoded():
        key = dead_letter_key(number)
        if rejection is not None:
            assert key in dead, f"line {number} is rejected ({rejection}) but not listed as {key!r}"
            assert dead[key] == rejection.reason.value, f"line {number}: {rejection}"
        elif event["id"] in dead:
            # Decodes, but the normalise stage must find nothing to read.
            assert dead[event["id"]] == DeadLetterReason.EMPTY_TEXT.value
            assert blank(event.get("text")) and blank(event.get("html")), event["id"]
        else:
            assert not blank(event.get("text")) or not blank(event.get("html")), event["id"]


def test_every_expected_dead_letter_is_in_the_file():
    keys = {dead_letter_key(number) for number in range(len(lines()))}
    reasons = {reason.value for reason in DeadLetterReason}
    for key, reason in expected()["dead_letters"].items():
        assert key in keys, f"dead letter {key!r} is not in articles.jsonl"
        assert reason in reasons, f"{key!r}: unknown reason {reason!r}"
    wanted = {"invalid_json", "schema_violation", "empty_text"}
    assert wanted <= set(expected()["dead_letters"].values())


def test_volume_and_languages():
    assert len(lines()) >= 45
    languages = expected()["languages"]
    assert set(languages) == set(good()), "every good record, and only those, has an expected language"
    assert len(set(languages.values())) >= 6
    assert set(languages.values()) & NON_LATIN_LANGUAGES, "at least one non-Latin script"


def test_ids_are_unique():
    ids = [readable_id(line) for line in lines()]
    ids = [i for i in ids if i is not None]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates


def test_expected_names_only_records_in_the_file():
    records = good()
    truth = expected()
    named = set(itertools.chain.from_iterable(truth["clusters"])) | set(itertools.chain.from_iterable(truth["apart"]))
    assert named <= set(records), sorted(named - set(records))


def test_clusters_are_consistent():
    truth = expected()
    languages = truth["languages"]
    cluster_of = {}
    for index, cluster in enumerate(truth["clusters"]):
        assert len(cluster) >= 2
        assert len({languages[member] for member in cluster}) == 1, f"cluster {cluster} mixes languages"
        for member in cluster:
            assert member not in cluster_of, f"{member} is in two clusters"
            cluster_of[member] = index
    assert len(truth["clusters"]) >= 5
    assert len({languages[cluster[0]] for cluster in truth["clusters"]}) >= 3
    for a, b in truth["apart"]:
        assert a != b
        assert cluster_of.get(a) is None or cluster_of.get(a) != cluster_of.get(b), (
            f"{a} and {b} are both apart and together"
        )


def test_samples_cover_the_hard_cases():
    records = good()
    truth = expected()
    clustered = set(itertools.chain.from_iterable(truth["clusters"]))
    # An exact duplicate: the same text under two ids from two sources, in one cluster.
    by_text = {}
    for record_id, record in records.items():
        by_text.setdefault(record.get("text"), []).append(record_id)
    duplicates = [ids for text, ids in by_text.items() if text and len(ids) > 1]
    assert any(len({records[i]["source"] for i in ids}) == len(ids) and set(ids) <= clustered for ids in duplicates)
    # HTML pages, at least one of them a syndicated copy.
    html = {record_id for record_id, record in records.items() if "html" in record and "text" not in record}
    assert html & clustered
    # Hard negatives: unclustered articles kept apart from a cluster.
    negatives = {a if b in clustered else b for a, b in truth["apart"] if (a in clustered) != (b in clustered)}
    assert len(negatives) >= 3


@pytest.mark.parametrize("field", ["url", "source", "title", "published_at"])
def test_good_records_carry_the_usual_fields(field):
    for record_id, record in good().items():
        assert record.get(field), f"{record_id} has no {field}"


def test_text_paragraphs_are_separated_by_blank_lines():
    for record_id, record in good().items():
        text = record.get("text")
        if text:
            assert text == text.strip(), record_id
            assert "\n\n\n" not in text, record_id
            assert text.count("\n\n") >= 2, f"{record_id}: expected paragraphs separated by blank lines"
