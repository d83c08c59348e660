"""Language stage: the detector's pure functions and the DetectLanguage transform."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import apache_beam as beam
import fastjsonschema
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirecopy.schemas.codec import ENRICHED_ARTICLE, decode_raw_article, load_schema
from wirecopy.schemas.records import Article, DeadLetter, DeadLetterReason, Rejected, SourceRecord
from wirecopy.transforms import language_calibration
from wirecopy.transforms.language import (
    DEFAULT_THRESHOLD,
    UNDETERMINED,
    DetectLanguage,
    LanguageDetector,
    normalise_code,
    representative_sample,
)
from wirecopy.transforms.language_detector import (
    GRAM_CLASSES,
    LEXICON_MAX_TEXT_WORDS,
    SAMPLE_CHARS,
    _key,
    lexicon_scores,
)
from wirecopy.transforms.normalise import draft_article, finish

from articles import content

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_ARTICLES = {
    language: texts
    for language, texts in json.loads((FIXTURES / "articles_by_language.json").read_text(encoding="utf-8")).items()
    if not language.startswith("_")
}
FIXTURE_SENTENCES = {
    language: lines
    for language, lines in json.loads((FIXTURES / "sentences_by_language.json").read_text(encoding="utf-8")).items()
    if not language.startswith("_")
}

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
SPANISH = (
    "El ayuntamiento aprobó el martes el nuevo presupuesto tras un largo debate sobre la "
    "financiación de las escuelas, las carreteras y el transporte público."
)
RUSSIAN = (
    "Городской совет во вторник утвердил новый бюджет после долгих споров о финансировании "
    "школ, дорог и общественного транспорта в следующем году."
)
ARABIC = "أعلنت الحكومة يوم الثلاثاء عن ميزانية جديدة للمدارس والطرق والنقل العام في العام المقبل."
HINDI = "सरकार ने मंगलवार को स्कूलों, सड़कों और सार्वजनिक परिवहन के लिए नया बजट घोषित किया।"
CHINESE = "市议会周二在就学校、道路和公共交通的资金问题进行长时间辩论后批准了新的预算。"
JAPANESE = "市議会は火曜日、学校や道路、公共交通の予算について長い議論の末に新しい予算を承認した。"

validate_language = fastjsonschema.compile(load_schema(ENRICHED_ARTICLE)["properties"]["language"])


@pytest.fixture(scope="module")
def detector():
    return LanguageDetector()


@pytest.mark.parametrize(
    "text, expected",
    [
        (ENGLISH, "en"),
        (FRENCH, "fr"),
        (GERMAN, "de"),
        (SPANISH, "es"),
        (RUSSIAN, "ru"),
        (ARABIC, "ar"),
        (HINDI, "hi"),
        (CHINESE, "zh"),
        (JAPANESE, "ja"),
    ],
)
def test_detects_clear_texts_confidently(detector, text, expected):
    result = detector.detect(text)
    assert result.code == expected
    assert result.confidence >= 0.9
    assert result.alternatives[0][0] == expected


@pytest.mark.parametrize(
    "word, expected",
    [
        ("Ελλάδα", "el"),
        ("대한민국", "ko"),
        ("ประเทศไทย", "th"),
        ("ירושלים", "he"),
        ("Հայաստան", "hy"),
        ("საქართველო", "ka"),
        ("தமிழ்நாடு", "ta"),
        ("ਪੰਜਾਬ", "pa"),
        ("ひらがな", "ja"),
    ],
)
def test_a_script_of_one_language_decides_on_its_own(detector, word, expected):
    assert detector.detect(word).code == expected


def test_kana_makes_japanese_and_a_stray_kana_word_does_not(detector):
    assert detector.detect(JAPANESE).code == "ja"
    # Three katakana among forty-odd hanzi (a brand name) leave it Chinese.
    assert detector.detect(CHINESE + "索尼ソニー公司").code == "zh"


def test_latin_names_do_not_move_a_cyrillic_text(detector):
    text = "Манчестер Юнайтед (Manchester United, Cristiano Ronaldo) " + RUSSIAN
    assert detector.detect(text).code == "ru"


def test_latin_boilerplate_does_not_outweigh_another_script(detector):
    header = "Daily Times Online Edition Home Latest News Business Economy Sports Contact "
    urdu = "حکومت نے منگل کو اسکولوں اور سڑکوں کے لیے نیا بجٹ منظور کر لیا۔"
    latin, arabic = sum(c.isascii() and c.isalpha() for c in header), sum(c.isalpha() for c in urdu)
    assert arabic < latin < 2 * arabic, "more Latin letters than Urdu ones, but not twice as many"
    assert detector.detect(header + urdu).code == "ur"
    assert detector.detect(ENGLISH + " Путин").code == "en"


def test_ethiopic_script_is_not_guessed(detector):
    # Amharic and Tigrinya share the script and langdetect has neither.
    assert detector.detect("የኢትዮጵያ መንግሥት አዲስ በጀት አጸደቀ").code == UNDETERMINED


@pytest.mark.parametrize("text", ["", "   \n\n ", "42 - 17 = 25", "ok", None])
def test_empty_or_too_short_text_is_undetermined(detector, text):
    result = detector.detect(text)
    assert (result.code, result.confidence, result.alternatives) == (UNDETERMINED, 0.0, ())


def test_below_the_threshold_the_code_is_und_but_the_evidence_is_kept(detector):
    result = detector.detect("zuhause bleiben", threshold=0.9999)
    assert result.code == UNDETERMINED
    assert 0 < result.confidence < 0.9999
    assert result.alternatives and result.alternatives[0][1] == result.confidence


def test_short_ambiguous_text_is_not_labelled_confidently(detector):
    # langdetect's classic: "I love you" comes out as Slovak or similar.
    result = detector.detect("I love you")
    assert result.code in ("en", UNDETERMINED)


@pytest.mark.parametrize(
    "pair, code",
    [
        # Danish spelling, but n-grams alone said Norwegian (0.81 and 0.51):
        # "meget" and "morgenmad" are common Danish words, rare in Norwegian.
        ("meget sjovt", "da"),
        ("spise morgenmad", "da"),
        # Slovak "bolo" (Czech "bylo"); n-grams alone said Spanish.
        ("bolo to", "sk"),
    ],
)
def test_word_frequencies_separate_close_neighbours_in_short_texts(detector, pair, code):
    assert detector.detect(pair).code == code


def test_without_word_frequencies_those_pairs_go_wrong(detector):
    # The same detector with the word evidence switched off: the pairs above
    # are the ones the n-grams alone get wrong, so the test above tests the words.
    calibration = types.SimpleNamespace(**{k: getattr(language_calibration, k) for k in dir(language_calibration)})
    calibration.LEXICON_WEIGHT = 0.0
    ngrams_only = LanguageDetector(calibration=calibration, lexicon=detector._lexicon)
    assert [ngrams_only.detect(pair, threshold=0.0).code for pair in ("meget sjovt", "spise morgenmad", "bolo to")] == [
        "no",
        "no",
        "es",
    ]


def test_word_evidence_compares_only_languages_with_a_word_list(detector):
    lexicon = detector._lexicon
    columns = {language: i for i, language in enumerate(detector._tables.languages)}
    candidates = np.array([columns["af"], columns["nl"], columns["de"]])
    scores = lexicon_scores(lexicon, "het is", candidates)
    # Afrikaans has no wordfreq list: neither helped nor pushed down.
    assert scores[0] == 0.0
    assert scores.max() == 0.0 and scores[1] == 0.0 and scores[2] < 0.0
    # Words no candidate lists (a name) say nothing.
    assert not lexicon_scores(lexicon, "Xqzvbrt", candidates).any()
    # Long texts are left to the n-grams.
    assert not lexicon_scores(lexicon, " ".join(["het"] * (LEXICON_MAX_TEXT_WORDS + 1)), candidates).any()


def test_title_counts_as_evidence(detector):
    assert detector.detect(None, title=FRENCH).code == "fr"


def test_event_matches_the_schema(detector):
    event = detector.detect(FRENCH + " " + SPANISH, hint="fr").to_event()
    validate_language(event)
    assert event["hint"] == "fr"
    assert event["detector"].startswith("wirecopy-ngram-")
    probabilities = [a["probability"] for a in event["alternatives"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1.0 + 1e-3


def test_hint_is_recorded_but_does_not_override_evidence(detector):
    result = detector.detect(GERMAN, hint="en")
    assert (result.code, result.hint, result.hint_disagrees) == ("de", "en", True)
    assert not detector.detect(GERMAN, hint="de-AT").hint_disagrees
    assert not detector.detect("", hint="en").hint_disagrees


@pytest.mark.parametrize(
    "raw, code", [("zh-cn", "zh"), ("zh-tw", "zh"), ("en_US", "en"), ("DE", "de"), ("", None), (None, None)]
)
def test_normalise_code(raw, code):
    assert normalise_code(raw) == code


def test_deterministic_across_processes(detector):
    texts = ["I love you", "manera profesional", "bekleedde oorlog", ENGLISH + FRENCH, CHINESE]
    script = (
        "import json, sys\n"
        "from wirecopy.transforms.language import LanguageDetector\n"
        "d = LanguageDetector()\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps([d.detect(t, threshold=0.0).to_event() for t in texts]))\n"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        finished = subprocess.run(
            [sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True, check=True, env=env
        )
        outputs.add(finished.stdout.strip())
    in_process = json.dumps([detector.detect(t, threshold=0.0).to_event() for t in texts])
    assert outputs == {in_process}


def test_sample_is_bounded_and_spread_over_the_text():
    body = " ".join(f"w{i:05d}" for i in range(5000))
    sample = representative_sample(body, title="Title")
    assert sample.startswith("Title\n\n")
    assert len(sample) <= SAMPLE_CHARS + len("Title\n\n")
    words = sample.split()[1:]
    assert all(len(word) == 6 for word in words), "windows are cut at whitespace"
    numbers = [int(word[1:]) for word in words]
    assert numbers[0] == 0 and numbers[-1] == 4999, "the first and the last window reach the ends"
    assert sum(500 < n < 4500 for n in numbers) > len(numbers) // 3, "and windows in between"
    assert representative_sample("short text", None) == "short text"


def test_a_lead_paragraph_in_another_language_does_not_decide(detector):
    article = "\n\n".join([ENGLISH] + [GERMAN] * 12)
    assert detector.detect(article).code == "de"


def test_calibration_names_only_real_profiles(detector):
    languages = set(detector._tables.languages)
    for table in (
        language_calibration.SEEN_WEIGHT,
        language_calibration.UNSEEN_OFFSET,
        language_calibration.BIAS,
        language_calibration.TRIGRAM_MISS_RATE,
    ):
        assert set(table) <= languages
    assert {"en", "de", "fr", "sw", "so"} <= set(language_calibration.TRIGRAM_MISS_RATE)


def test_calibration_weighs_each_gram_class():
    for table in (language_calibration.SEEN_WEIGHT, language_calibration.UNSEEN_OFFSET):
        assert {len(values) for values in table.values()} == {len(GRAM_CLASSES)}
    assert (
        len(language_calibration.SHARED_SEEN_WEIGHT)
        == len(language_calibration.SHARED_UNSEEN_OFFSET)
        == len(GRAM_CLASSES)
    )


@pytest.mark.parametrize(
    "gram, gram_class",
    [
        ("e", "unigram"),
        (" d", "bigram at word start"),
        ("r ", "bigram at word end"),
        ("er", "bigram inside word"),
        (" de", "trigram at word start"),
        (" a ", "trigram at word start"),
        ("er ", "trigram at word end"),
        ("der", "trigram inside word"),
    ],
)
def test_word_boundary_ngrams_have_their_own_classes(detector, gram, gram_class):
    tables = detector._tables
    row = int(np.searchsorted(tables.keys, _key(gram)))
    assert tables.keys[row] == _key(gram), "the profiles have it"
    assert GRAM_CLASSES[tables.gram_class[row]][0] == gram_class


def _project_articles() -> dict[str, list[str]]:
    """Language code → "title\n\ntext" of every bundled sample article with a known language (its normalised
    title and text, as the stage sees them), and the English and Somali texts of tests/fixtures."""
    expected = json.loads(importlib.resources.files("wirecopy.pipelines.samples").joinpath("expected.json").read_text())
    lines = importlib.resources.files("wirecopy.pipelines.samples").joinpath("articles.jsonl").read_bytes().split(b"\n")
    by_language = {"en": list(FIXTURE_ARTICLES["en"]), "so": list(FIXTURE_ARTICLES["so"])}
    for offset, line in enumerate(lines):
        try:
            raw = decode_raw_article(line)
            article = finish(draft_article(Article(SourceRecord("raw", 0, offset, line), raw)))
        except Rejected:
            continue
        if raw["id"] in expected["languages"]:
            text = f"{article.content.title or ''}\n\n{article.content.text}"
            by_language.setdefault(expected["languages"][raw["id"]], []).append(text)
    return by_language


PROJECT_ARTICLES = _project_articles()


@pytest.mark.parametrize("code", ["de", "el", "en", "es", "fr", "it", "pt", "ru", "so", "sw"])
def test_real_articles_in_known_languages(detector, code):
    texts = PROJECT_ARTICLES[code]
    assert texts
    assert [detector.detect(text).code for text in texts] == [code] * len(texts)


def test_languages_without_a_profile_are_mostly_und(detector):
    # Hausa, Yoruba, Igbo, Oromo, Shona, Xhosa: news texts in languages langdetect has no profile for.
    codes = {
        language: [detector.detect(text).code for text in FIXTURE_ARTICLES[language]]
        for language in ("ha", "yo", "ig", "om", "sn", "xh")
    }
    undetermined = [code == UNDETERMINED for language_codes in codes.values() for code in language_codes]
    assert sum(undetermined) >= 0.75 * len(undetermined), codes
    for language, language_codes in codes.items():
        assert language_codes.count(UNDETERMINED) >= 0.5 * len(language_codes), (language, language_codes)


def test_everyday_sentences(detector):
    # Short single sentences, the hard case for n-grams; 99.4 % cross-validated on the lingua
    # sentences (bench_language.py). This guards against a regression.
    correct = total = 0
    for code, lines in FIXTURE_SENTENCES.items():
        for line in lines:
            correct += detector.detect(line, threshold=0.0).code == code
            total += 1
    assert total == 120 and correct / total >= 0.98


def _article(article_id: str, text: str, title: str | None = None, hint: str | None = None) -> Article:
    raw = {"id": article_id, "language": hint} if hint else {"id": article_id}
    source = SourceRecord(topic="raw", partition=0, offset=int(article_id[1:]), value=b"{}")
    return Article(source=source, raw=raw, content=content(article_id, text=text, title=title))


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
            lambda o: (o.article_id, o.language["code"], o.language["hint"]) if isinstance(o, Article) else o
        )
        assert_that(codes, equal_to([("a1", "en", None), ("a2", "de", "en"), ("a3", UNDETERMINED, None), passing]))
    metrics = pipeline.result.metrics().query()["counters"]
    counts = {m.key.metric.name: m.committed for m in metrics}
    assert counts["language_en"] == 1
    assert counts["language_de"] == 1
    assert counts["language_und"] == 1
    assert counts["language_hint_disagreement"] == 1


def test_threshold_option_is_validated():
    assert DetectLanguage().__dict__["_threshold"] == DEFAULT_THRESHOLD
    with pytest.raises(ValueError):
        DetectLanguage(threshold=1.5)


def test_the_stage_unpickles_the_detector_its_code_built_before(detector, tmp_path, monkeypatch):
    """The first worker builds and keeps it; the next loads it and detects the same; a changed build (another
    digest) or a cut-off file is built again, and only the current one is kept."""
    from wirecopy.transforms import language_detector

    monkeypatch.setenv("WIRECOPY_CACHE", str(tmp_path))
    stale = tmp_path / "language-detector-0123.pickle"
    stale.write_bytes(b"an older build")
    built = language_detector.cached_detector()
    path = language_detector.detector_cache_path()
    assert sorted(tmp_path.iterdir()) == [path]
    with monkeypatch.context() as building:
        building.setattr(LanguageDetector, "__init__", lambda *_: pytest.fail("built again instead of loaded"))
        loaded = language_detector.cached_detector()
    assert loaded is not built and isinstance(loaded, LanguageDetector)
    for text in (ENGLISH, FRENCH, "Habari za asubuhi, rafiki yangu. Leo tutaenda sokoni kununua matunda.", "12 34"):
        assert loaded.detect(text) == built.detect(text) == detector.detect(text)
    path.write_bytes(path.read_bytes()[:1000])
    assert language_detector.cached_detector().detect(ENGLISH) == detector.detect(ENGLISH)
    assert path.stat().st_size > 1000
    monkeypatch.setattr(language_detector, "_CACHED_PACKAGES", ("numpy",))
    assert language_detector.detector_cache_path() != path
