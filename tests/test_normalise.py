"""Normalise stage: pure cleaning and metadata functions, and the Normalise transform."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import fastjsonschema
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.codec import ENRICHED_ARTICLE, load_schema
from schemas.records import Article, DeadLetterReason, Rejected, SourceRecord
from transforms.normalise import (
    Normalise,
    canonical_url,
    clean_text,
    fingerprint,
    normalise_fields,
    normalise_published_at,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEEDS = SHARED / "seeds"

_enriched = load_schema(ENRICHED_ARTICLE)
_NORMALISED_PROPERTIES = (
    "article_id url canonical_url source title byline text word_count boilerplate_removed published_at".split()
)
validate_normalised = fastjsonschema.compile(
    {
        "type": "object",
        "additionalProperties": False,
        "required": _NORMALISED_PROPERTIES,
        "properties": {name: _enriched["properties"][name] for name in _NORMALISED_PROPERTIES},
    }
)


def article(raw: dict, offset: int = 0) -> Article:
    return Article(SourceRecord("raw", 0, offset, b"{}"), raw)


# --- readable text ----------------------------------------------------------


def test_clean_text_keeps_paragraphs_and_typography():
    text = "  First  paragraph \u201cquoted\u201d \u2013 here.\r\n\r\n\r\nSecond\tparagraph\u2026  \n"
    assert clean_text(text) == ["First paragraph \u201cquoted\u201d \u2013 here.", "Second paragraph\u2026"]


def test_clean_text_removes_invisible_and_control_characters():
    text = "soft\u00adhy\u200bphen\u00a0and\u202fnbsp\x07\ufeff"
    assert clean_text(text) == ["softhyphen and nbsp"]


def test_clean_text_restores_wire_typography_and_drops_line_end_markers():
    text = "It\x19s a \x1cwire\x1d story \x13 really. <\nnext paragraph starts lower-case <"
    assert clean_text(text) == ["It\u2019s a \u201cwire\u201d story \u2013 really.", "next paragraph starts lower-case"]


def test_clean_text_repairs_windows_1252_read_as_latin_1():
    assert clean_text("It\x92s \x93fine\x94\x85") == ["It\u2019s \u201cfine\u201d\u2026"]


def test_clean_text_joins_wrapped_lines_but_not_paragraph_lines():
    text = "A sentence that was hard\nwrapped by the feed.\nA new paragraph.\n\u2022 a list item"
    assert clean_text(text) == ["A sentence that was hard wrapped by the feed.", "A new paragraph.", "\u2022 a list item"]


def test_clean_text_composes_to_nfc():
    assert clean_text("cafe\u0301") == ["caf\u00e9"]


# --- fingerprint ------------------------------------------------------------


def test_fingerprint_contract():
    text = "Don\u2019t  STOP\u2014the \u201cmusic\u201d\u2026 na\u00efve\n\n\n\u00c9COLE Stra\u00dfe, 11-12 March!"
    assert fingerprint(text) == "don t stop the music na\u00efve\n\u00e9cole strasse 11 12 march"


def test_fingerprint_unifies_typographic_variants():
    curly = "\u201cIt\u2019s over\u201d \u2014 she said\u2026"
    plain = '"It\'s over" - she said...'
    modifier = "\u201cIt\u02bcs over\u201d \u2013 she said ..."
    assert fingerprint(curly) == fingerprint(plain) == fingerprint(modifier) == "it s over she said"


def test_fingerprint_keeps_letters_marks_and_digits_of_every_script():
    assert fingerprint("\u0939\u093f\u0928\u094d\u0926\u0940 \u1243\u120d\u1363 \u0627\u0644\u062e\u0628\u0631\u061f \u4e2d\u6587\uff01 \uff11\uff12") == (
        "\u0939\u093f\u0928\u094d\u0926\u0940 \u1243\u120d \u0627\u0644\u062e\u0628\u0631 \u4e2d\u6587 12"
    )


def test_fingerprint_removes_format_characters_inside_words():
    assert fingerprint("de\u00admo\u200dcracy") == "democracy"


def test_fingerprint_drops_paragraphs_with_no_words():
    assert fingerprint("One.\n\n* * *\n\nTwo.") == "one\ntwo"


# --- metadata ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("HTTPS://WWW.Example.COM:443/News/Story/?utm_source=x&b=2&a=1&fbclid=3&gclid=4#top", "https://www.example.com/News/Story?a=1&b=2"),
        ("http://example.org", "http://example.org/"),
        ("http://example.org:8080/a/", "http://example.org:8080/a"),
        ("https://example.org/a?UTM_Medium=email", "https://example.org/a"),
        ("ftp://example.org/a", None),
        ("/news/business-61792300", None),
        ("http://[::1", None),
        (None, None),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-03-01T10:00:00+01:00", "2024-03-01T09:00:00.000Z"),
        ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00.000Z"),
        ("2024-03-01T10:00:00", "2024-03-01T10:00:00.000Z"),
        ("yesterday", None),
        (None, None),
    ],
)
def test_normalise_published_at(value, expected):
    assert normalise_published_at(value) == expected


def test_fields_satisfy_the_output_contract():
    fields, matching_form = normalise_fields(
        {
            "id": "a1",
            "url": "https://www.Example.com/story?utm_campaign=x",
            "title": " A  title ",
            "text": "First paragraph.\nSecond paragraph here.",
            "published_at": "2024-03-01T10:00:00+01:00",
        }
    )
    validate_normalised(fields)
    assert fields["text"] == "First paragraph.\n\nSecond paragraph here."
    assert fields["title"] == "A title"
    assert fields["word_count"] == 5
    assert fields["canonical_url"] == "https://www.example.com/story"
    assert fields["source"] == "example.com"
    assert fields["published_at"] == "2024-03-01T09:00:00.000Z"
    assert matching_form == "first paragraph\nsecond paragraph here"


def test_raw_source_wins_over_the_url_host():
    fields, _ = normalise_fields({"id": "a", "url": "https://example.com/x", "source": " Example  News ", "text": "Body."})
    assert fields["source"] == "Example News"


@pytest.mark.parametrize("raw", [{"id": "a"}, {"id": "a", "text": " \n\t "}, {"id": "a", "text": "\u200b\u00ad\x07"}])
def test_empty_text_is_rejected(raw):
    with pytest.raises(Rejected) as rejection:
        normalise_fields(raw)
    assert rejection.value.reason is DeadLetterReason.EMPTY_TEXT


# --- the transform ----------------------------------------------------------


def test_normalise_transform_emits_articles_and_dead_letters():
    seed = (SEEDS / "000_08082de8ad36f634.txt").read_text(encoding="utf-8")
    inputs = [
        article({"id": "seed", "text": seed}, 0),
        article({"id": "empty", "text": "   "}, 1),
        article({"id": "published", "text": "Body.", "published_at": "not a date"}, 2),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        good, dead = pipeline | beam.Create(inputs) | Normalise()
        summaries = good | "Summarise" >> beam.Map(
            lambda a: (a.article_id, a.fields["published_at"], a.fingerprint.startswith("ministers engage"), a.fields["text"] != "")
        )
        assert_that(summaries, equal_to([("seed", None, True, True), ("published", None, False, True)]), label="good")
        reasons = dead | beam.Map(lambda letter: (letter.article_id, letter.reason, letter.stage))
        assert_that(reasons, equal_to([("empty", DeadLetterReason.EMPTY_TEXT, "Normalise")]), label="dead")
