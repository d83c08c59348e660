"""Language stage: pure detector functions and the DetectLanguage transform."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import fastjsonschema
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.codec import ENRICHED_ARTICLE, load_schema
from schemas.records import Article, DeadLetter, DeadLetterReason, SourceRecord
from transforms.language import (
    DEFAULT_THRESHOLD,
    UNDETERMINED,
    DetectLanguage,
    LangdetectDetector,
    normalise_code,
)

ENGLISH = (
    "The city council approved the new budget on Tuesday after a long debate about "
    "funding for schools, roads and public transport in the coming year."
)
FRENCH = (
    "Le conseil municipal a approuvé mardi le nouveau budget après un long débat sur "
    "le financement des écoles, des routes et des transports publics l'année prochaine."
)
GERMAN = (
    "Der Stadtrat hat am Dienstag nach einer langen Debatte über die Finanzierung von "
    "Schulen, Straßen und öffentlichem Nahverkehr den neuen Haushalt beschlossen."
)
CHINESE = "市议会周二在就学校、道路和公共交通的资金问题进行长时间辩论后批准了新的预算。"

validate_language = fastjsonschema.compile(load_schema(ENRICHED_ARTICLE)["properties"]["language"])


@pytest.fixture(scope="module")
def detector():
    return LangdetectDetector()


@pytest.mark.parametrize(
    "text, expected", [(ENGLISH, "en"), (FRENCH, "fr"), (GERMAN, "de")]
)
def test_detects_clear_texts_confidently(detector, text, expected):
    result = detector.detect(text)
    assert result.code == expected
    assert result.confidence >= DEFAULT_THRESHOLD
    assert result.alternatives[0][0] == expected


def test_chinese_variants_map_to_zh(detector):
    assert detector.detect(CHINESE, threshold=0.5).code == "zh"


@pytest.mark.parametrize("text", ["", "   \n\n ", "42 - 17", "ok"])
def test_empty_or_too_short_text_is_undetermined(detector, text):
    result = detector.detect(text)
    assert result.code == UNDETERMINED
    assert result.confidence == 0.0


def test_threshold_turns_a_weak_label_into_und(detector):
    assert detector.detect(ENGLISH, threshold=1.0).code == UNDETERMINED


def test_title_counts_as_evidence(detector):
    assert detector.detect(None, title=FRENCH).code == "fr"


def test_event_matches_the_schema(detector):
    event = detector.detect(FRENCH, hint="fr").to_event()
    validate_language(event)
    assert event["hint"] == "fr"
    assert event["detector"].startswith("langdetect-")
    assert abs(sum(a["probability"] for a in event["alternatives"]) - 1.0) < 0.2


def test_hint_is_recorded_but_does_not_override_evidence(detector):
    result = detector.detect(GERMAN, hint="en")
    assert (result.code, result.hint, result.hint_disagrees) == ("de", "en", True)
    assert not detector.detect(GERMAN, hint="de-AT").hint_disagrees
    assert not detector.detect("", hint="en").hint_disagrees


@pytest.mark.parametrize("raw, code", [("zh-cn", "zh"), ("zh-tw", "zh"), ("en_US", "en"), ("DE", "de"), ("", None), (None, None)])
def test_normalise_code(raw, code):
    assert normalise_code(raw) == code


def test_deterministic_across_processes(detector):
    # Short, ambiguous text is where unseeded langdetect flips between runs.
    text = "I love you"
    script = (
        "from transforms.language import LangdetectDetector as D;"
        f"r = D().detect({text!r}, threshold=0.0);print(r.code, r.confidence)"
    )
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    in_process = detector.detect(text, threshold=0.0)
    assert runs == {f"{in_process.code} {in_process.confidence}\n"}


def _article(article_id: str, text: str, title: str | None = None, hint: str | None = None) -> Article:
    raw = {"id": article_id, "language": hint} if hint else {"id": article_id}
    source = SourceRecord(topic="raw", partition=0, offset=int(article_id[1:]), value=b"{}")
    return Article(source=source, raw=raw, fields={"text": text, "title": title})


def test_detect_language_transform():
    articles = [
        _article("a1", ENGLISH, title="Council passes budget"),
        _article("a2", GERMAN, hint="en"),
        _article("a3", "", title=None),
    ]
    passing = DeadLetter(DeadLetterReason.INVALID_JSON, "not json", "Decode", articles[0].source)
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outcomes = pipeline | beam.Create([*articles, passing]) | DetectLanguage()
        codes = outcomes | beam.Map(
            lambda o: (o.article_id, o.fields["language"]["code"], o.fields["language"]["hint"])
            if isinstance(o, Article) else o
        )
        assert_that(codes, equal_to([("a1", "en", None), ("a2", "de", "en"), ("a3", UNDETERMINED, None), passing]))
    metrics = pipeline.result.metrics().query()["counters"]
    counts = {m.key.metric.name: m.committed for m in metrics}
    assert counts["language_en"] == 1
    assert counts["language_de"] == 1
    assert counts["language_und"] == 1
    assert counts["language_hint_disagreement"] == 1


def test_threshold_option_is_validated():
    with pytest.raises(ValueError):
        DetectLanguage(threshold=1.5)
