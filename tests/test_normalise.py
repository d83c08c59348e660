"""Normalise stage: cleaning, boilerplate removal (patterns and per-source learning), metadata, the transform."""

from __future__ import annotations

import collections
import dataclasses
import importlib.resources
import itertools
import json
import math
import random
from pathlib import Path

import apache_beam as beam
import fastjsonschema
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirecopy.schemas.codec import ENRICHED_ARTICLE, decode_raw_article, load_schema
from wirecopy.schemas.records import Article, DeadLetter, DeadLetterReason, Rejected, SourceRecord
from wirecopy.transforms.normalise import (
    COPY_OVERLAP,
    MAX_HISTORY_BYTES,
    MIN_DISTINCT_ARTICLES,
    RECENT_ARTICLES,
    TEMPLATE_SHARE,
    Normalise,
    SeenArticle,
    boilerplate_reason,
    canonical_url,
    clean_text,
    clean_title,
    clean_word_count,
    decode_history,
    draft_article,
    encode_history,
    extract_html,
    finish,
    fingerprint,
    is_plain_text,
    normalise_published_at,
    paragraph_fingerprints,
    registrable_domain,
    remember,
    remove_boilerplate,
    repair_text,
    seen_article,
    template_paragraphs,
    word_count,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCRAPER_COPY = FIXTURES / "story_gridpolicyhub.txt"  # an aggregator's excerpt of the wire story
BLOG_COPY = FIXTURES / "story_gridwatch.txt"  # a blog's longer edit of it

_enriched = load_schema(ENRICHED_ARTICLE)
_NORMALISED = (
    "article_id url canonical_url source title byline text word_count boilerplate_removed published_at published_at_raw"
).split()
validate_normalised = fastjsonschema.compile(
    {
        "type": "object",
        "additionalProperties": False,
        "required": _NORMALISED,
        "properties": {name: _enriched["properties"][name] for name in _NORMALISED},
    }
)


def article(raw: dict, offset: int = 0) -> Article:
    return Article(SourceRecord("raw", 0, offset, b"{}"), raw)


def normalised(raw: dict) -> Article:
    """One article through the generic patterns alone (no per-source history)."""
    return finish(draft_article(article(raw)))


def project_texts() -> list[str]:
    """Every raw plain text the project holds: the bundled samples' and the story pages'."""
    texts = []
    for line in (
        importlib.resources.files("wirecopy.pipelines.samples").joinpath("articles.jsonl").read_bytes().split(b"\n")
    ):
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the samples' broken records
        if isinstance(raw, dict) and isinstance(raw.get("text"), str):
            texts.append(raw["text"])
    return texts + [SCRAPER_COPY.read_text(encoding="utf-8"), BLOG_COPY.read_text(encoding="utf-8")]


def distinct_bodies() -> list[str]:
    """Bodies of distinct articles, longest first, in several languages and free of boilerplate: the
    normalised text of one plain-text article per story of the bundled samples (copies count once), of
    the blog's story page, and of the English texts of tests/fixtures."""
    samples = importlib.resources.files("wirecopy.pipelines.samples")
    story_of = {
        member: members[0]
        for members in json.loads(samples.joinpath("expected.json").read_text())["clusters"]
        for member in members
    }
    raws, stories = [], set()
    for line in samples.joinpath("articles.jsonl").read_bytes().split(b"\n"):
        try:
            raw = decode_raw_article(line)
        except Rejected:
            continue
        story = story_of.get(raw["id"], raw["id"])
        if "text" in raw and story not in stories:
            stories.add(story)
            raws.append(raw)
    english = json.loads((FIXTURES / "articles_by_language.json").read_text(encoding="utf-8"))["en"]
    raws += [
        {"id": "blog", "text": BLOG_COPY.read_text(encoding="utf-8")},
        *({"id": f"en{n}", "text": text} for n, text in enumerate(english)),
    ]
    bodies = []
    for raw in raws:
        try:
            bodies.append(normalised(raw).content.text)
        except Rejected:
            pass  # a sample with nothing left after cleaning is a dead letter, not a body
    return sorted(bodies, key=len, reverse=True)


# --- readable text ----------------------------------------------------------


def test_clean_text_keeps_paragraphs_and_typography():
    text = "  First  paragraph \u201cquoted\u201d \u2013 here.\r\n\r\n\r\nSecond\tparagraph\u2026  \n"
    assert clean_text(text) == ["First paragraph \u201cquoted\u201d \u2013 here.", "Second paragraph\u2026"]


def test_clean_text_removes_invisible_and_control_characters():
    assert clean_text("soft\u00adhy\u200bphen\u00a0and\u202fnbsp\x07\ufeff") == ["softhyphen and nbsp"]


def test_clean_text_restores_wire_typography_and_drops_line_end_markers():
    text = "It\x19s a \x1cwire\x1d story \x13 really. <\nnext paragraph starts lower-case <"
    assert clean_text(text) == ["It\u2019s a \u201cwire\u201d story \u2013 really.", "next paragraph starts lower-case"]


def test_clean_text_repairs_windows_1252_read_as_latin_1():
    assert clean_text("It\x92s \x93fine\x94\x85") == ["It\u2019s \u201cfine\u201d\u2026"]


def test_clean_text_joins_wrapped_lines_but_not_paragraph_lines():
    text = "A sentence that was hard\nwrapped by the feed.\nA new paragraph.\n\u2022 a list item"
    assert clean_text(text) == [
        "A sentence that was hard wrapped by the feed.",
        "A new paragraph.",
        "\u2022 a list item",
    ]


def test_clean_text_composes_to_nfc():
    assert clean_text("cafe\u0301") == ["caf\u00e9"]


# --- fingerprint ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, count",
    [("", 0), ("One", 1), ("a \u2013 b", 2), ("One.\n\n* * *\n\nTwo.", 2), ("don\u2019t  stop\n\nnow", 3)],
)
def test_word_count_counts_tokens_with_a_letter_or_digit(text, count):
    assert word_count(text) == count


def test_fingerprint_contract():
    text = "Don\u2019t  STOP\u2014the \u201cmusic\u201d\u2026 na\u00efve\n\n\n\u00c9COLE Stra\u00dfe, 11-12 March!"
    assert fingerprint(text) == "don t stop the music na\u00efve\n\u00e9cole strasse 11 12 march"


def test_fingerprint_unifies_typographic_variants():
    curly = "\u201cIt\u2019s over\u201d \u2014 she said\u2026"
    plain = '"It\'s over" - she said...'
    modifier = "\u201cIt\u02bcs over\u201d \u2013 she said ..."
    assert fingerprint(curly) == fingerprint(plain) == fingerprint(modifier) == "it s over she said"


def test_fingerprint_keeps_letters_marks_and_digits_of_every_script():
    text = "\u0939\u093f\u0928\u094d\u0926\u0940 \u1243\u120d\u1363 \u0627\u0644\u062e\u0628\u0631\u061f \u4e2d\u6587\uff01 \uff11\uff12"
    assert (
        fingerprint(text)
        == "\u0939\u093f\u0928\u094d\u0926\u0940 \u1243\u120d \u0627\u0644\u062e\u0628\u0631 \u4e2d\u6587 12"
    )


def test_fingerprint_removes_format_characters_inside_words():
    assert fingerprint("de\u00admo\u200dcracy") == "democracy"


def test_fingerprint_drops_paragraphs_with_no_words():
    assert fingerprint("One.\n\n* * *\n\nTwo.") == "one\ntwo"


# Characters that take the fast paths' shortcuts off their assumptions: every
# kind of space and line break, NFKC-changed forms, format characters,
# apostrophe letters, astral letters and symbols, controls, wire markers.
_AWKWARD = (
    [*"abcXYZ09", " ", " ", " ", "  ", ".", ",", "-", "*", "—", "“", "”", "’", "…", "(", ")", "<"]
    + [
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "\u00a0",
        "\u1680",
        "\u2002",
        "\u3000",
        "\u2028",
        "\u2029",
        "\x0b",
        "\x85",
        "\x19",
        "\x92",
    ]
    + [
        "\u00ad",
        "\u200b",
        "\u200d",
        "\u200e",
        "\u02bc",
        "\u00a8",
        "\ufb01",
        "\u2460",
        "\uff11",
        "\u00df",
        "\u0130",
        "\u03a3",
        "e\u0301",
    ]
    + ["\U0001d400", "\U0001f600", "\U0001f1eb", "\u1230", "\u4e2d", "\u0627", "\ufffd"]
)


# Characters a plain text may hold, combining marks and non-Latin scripts included.
_PLAIN = [*"abcXYZ09", " ", " ", "  ", ".", ",", "-", "*", "\u2014", "\u201c", "\u2019", "\u2026", "<", "\n", "\n\n"]
_PLAIN += ["\u00e9", "\u00df", "\u0130", "\u03a3", "\u0301", "\u1230", "\u4e2d", "\u0627", "\u0660", "\u0939\u093f"]


def _awkward_texts(count: int, alphabet: list[str] = _AWKWARD) -> list[str]:
    generator = random.Random(7)
    return ["".join(generator.choices(alphabet, k=generator.randint(1, 60))) for _ in range(count)]


def test_the_fast_paths_match_the_general_functions():
    texts = _awkward_texts(3000) + _awkward_texts(3000, _PLAIN) + project_texts()
    checked = collections.Counter()
    for text in texts:
        plain = is_plain_text(text)
        paragraphs = clean_text(text, plain)
        assert paragraphs == clean_text(text), repr(text)
        if not paragraphs:
            continue
        checked[plain] += 1
        assert paragraph_fingerprints(paragraphs, plain) == [fingerprint(paragraph) for paragraph in paragraphs], repr(
            text
        )
        assert clean_word_count(paragraphs) == word_count("\n\n".join(paragraphs)), repr(text)
    assert checked[True] > 1000 and checked[False] > 2000


def test_text_in_blank_line_separated_blocks_cleans_as_line_by_line():
    generator = random.Random(5)
    line_characters = [character for character in _PLAIN + _AWKWARD if "\n" not in character and "<" not in character]
    for _ in range(3000):
        lines = [
            "".join(generator.choices(line_characters, k=generator.randint(1, 30)))
            for _ in range(generator.randint(1, 6))
        ]
        text = "\n\n".join(lines)
        # A lone line break at the end changes nothing but sends the text through the line-by-line loop.
        assert clean_text(text) == clean_text(text + "\n"), repr(text)


@pytest.mark.parametrize("text", ["caf\u00e9", "\u4e2d\u6587 \u1230", "no\u00ebl"])
def test_plain_text_is_recognised(text):
    assert is_plain_text(text)


@pytest.mark.parametrize(
    "text", ["cafe\u0301", "\ufb01ne", "a\u00a0b", "a\x07b", "\ufffd", "de\u200dmo", "it\u02bcs", "emoji \U0001f600"]
)
def test_text_needing_care_is_not_plain(text):
    assert not is_plain_text(text)


def test_clean_text_leaves_single_spaces_only():
    for text in _awkward_texts(3000):
        for paragraph in clean_text(text):
            assert paragraph == paragraph.strip() and "  " not in paragraph, repr(text)
            assert all(not char.isspace() or char == " " for char in paragraph), repr(text)


def test_the_text_of_an_article_matches_by_its_words():
    result = normalised({"id": "a", "text": "One \u2014 “two”.\n\n* * *\n\nThree\u2026\nLeave a Reply"})
    assert fingerprint(result.content.text) == "one two\nthree"


# --- two copies of a story --------------------------------------------------------------

SCRAPER_BOILERPLATE = [
    "GridPolicyHub.com is a comprehensive online platform providing independent coverage",
    "Contacts",
    "Owner: BRIGHTWATER MEDIA s.r.o.",
    "Registration certificate 04417723",
    "11000, Vodičkova 12/3, Nové Město, 110 00 Praha 1",
    "Czech Republic",
    "Read more on energyweekly.com",
]
BLOG_BOILERPLATE = [
    "Related content",
    "Versions of this story originally appeared on GridWatch sister publications",
    "Priya Raman",
    "Learn More",
    "Leave a Reply",
    "Your email address will not be published",
    "Required fields are marked",
]


def _story_paragraphs(path: Path, boilerplate: list[str]) -> list[str]:
    """The copy's article paragraphs: every paragraph that holds none of the listed boilerplate."""
    return [p for p in clean_text(path.read_text(encoding="utf-8")) if not any(b in p for b in boilerplate)]


@pytest.mark.parametrize(
    "path, boilerplate, removed, byline",
    [
        (SCRAPER_COPY, SCRAPER_BOILERPLATE, {"site_description": 1, "contact": 5, "read_more": 1}, None),
        (
            BLOG_COPY,
            BLOG_BOILERPLATE,
            {"related": 1, "attribution": 1, "byline": 1, "learn_more": 1, "comment_form": 2},
            "Priya Raman",
        ),
    ],
    ids=["aggregator", "blog"],
)
def test_story_pages_lose_every_boilerplate_line_and_keep_every_article_paragraph(path, boilerplate, removed, byline):
    result = normalised({"id": path.stem, "text": path.read_text(encoding="utf-8")})
    text = result.content.text
    for line in boilerplate:
        assert line not in text
    assert text.split("\n\n") == _story_paragraphs(path, boilerplate)
    assert result.content.boilerplate_removed == removed
    assert result.content.byline == byline


def test_the_two_story_copies_match_despite_their_typography():
    scraper, blog = (
        normalised({"id": p.stem, "text": p.read_text(encoding="utf-8")}) for p in (SCRAPER_COPY, BLOG_COPY)
    )
    assert (
        fingerprint(scraper.content.text).split("\n")[0]
        == "energy minister to meet battery makers on grid storage shortfall"
    )
    # One copy writes “quoted” and ’ where the other writes "quoted" and ', and no-break spaces;
    # one edited "will rise" to "rises".
    warning = [
        line for line in fingerprint(scraper.content.text).split("\n") if line.startswith("the talks follow a winter")
    ]
    assert warning and warning[0] in fingerprint(blog.content.text).split("\n")
    demand = [
        line for line in fingerprint(scraper.content.text).split("\n") if line.startswith("demand for electricity")
    ]
    assert demand and demand[0] in fingerprint(blog.content.text).replace("will rise", "rises").split("\n")


# --- generic patterns -------------------------------------------------------


@pytest.mark.parametrize(
    "paragraph, reason",
    [
        ("Read more at theguardian.com", "read_more"),
        ("READ MORE: Ministers face backlash over plan", "read_more"),
        ("Lire la suite sur lemonde.fr", "read_more"),
        ("Weiterlesen", "read_more"),
        ("Soma zaidi", "read_more"),
        ("À lire aussi : Le gouvernement recule", "related"),
        ("Mehr zum Thema", "related"),
        ("Habari zinazohusiana", "related"),
        ("You may also like", "related"),
        ("Laisser un commentaire", "comment_form"),
        ("Deine E-Mail-Adresse wird nicht veröffentlicht. Erforderliche Felder sind mit * markiert", "comment_form"),
        ("Share this article", "share"),
        ("Facebook Twitter WhatsApp Email", "share"),
        ("Partager sur Facebook", "share"),
        ("Sign up for our daily newsletter", "subscribe"),
        ("Abonnez-vous à notre newsletter pour recevoir l'essentiel de l'actualité", "subscribe"),
        ("We use cookies to improve your experience. By continuing to browse you accept our cookie policy.", "cookie"),
        ("Wir verwenden Cookies, um Ihnen ein optimales Nutzererlebnis zu bieten.", "cookie"),
        ("© 2024 Example Media Ltd", "copyright"),
        (
            "Copyright 2024 The Associated Press. All rights reserved. This material may not be published, broadcast, rewritten or redistributed.",
            "copyright",
        ),
        ("Tous droits réservés", "copyright"),
        ("Haki zote zimehifadhiwa", "copyright"),
        ("Home | World | Politics", "navigation"),
        ("Accueil › Politique › International", "navigation"),
        ("Skip to main content", "navigation"),
        ("Tel: +44 20 7946 0000", "contact"),
        ("This article was originally published on The Conversation.", "attribution"),
        ("By Jane Doe and John Smith", "byline"),
        ("Par Marie Dupont, correspondante à Dakar", "byline"),
        ("(Reporting by Jane Doe; Editing by John Smith)", "byline"),
        ("Learn more \u2192", "learn_more"),
        ("En savoir plus", "learn_more"),
    ],
)
def test_generic_boilerplate_patterns(paragraph, reason):
    assert boilerplate_reason(paragraph) == reason


# One paragraph per marker phrase, each with the phrase mid-sentence: found only through the trigger phrases.
MARKER_PARAGRAPHS = [
    ("Note: your email address will not be published here.", "comment_form"),
    ("Note: required fields are marked with a star.", "comment_form"),
    ("Note : votre adresse e-mail ne sera pas publiée ici.", "comment_form"),
    ("Hinweis: Ihre E-Mail-Adresse wird nicht veröffentlicht.", "comment_form"),
    ("Nota: tu correo electrónico no será publicado.", "comment_form"),
    ("Nota: o seu endereço de e-mail não será publicado.", "comment_form"),
    ("Nota: il tuo indirizzo email non sarà pubblicato.", "comment_form"),
    ("Kumbuka: barua pepe yako haitachapishwa.", "comment_form"),
    ("2024 Daily News Ltd. All rights reserved.", "copyright"),
    ("2024 Le Quotidien. Tous droits réservés.", "copyright"),
    ("2024 Die Zeitung. Alle Rechte vorbehalten.", "copyright"),
    ("2024 El Diario. Todos los derechos reservados.", "copyright"),
    ("2024 O Jornal. Todos os direitos reservados.", "copyright"),
    ("2024 Il Giornale. Tutti i diritti riservati.", "copyright"),
    ("2024 De Krant. Alle rechten voorbehouden.", "copyright"),
    ("2024 Gazeti. Haki zote zimehifadhiwa.", "copyright"),
    ("2024 Jarida. Haƙƙin mallaka.", "copyright"),
    ("2024 ጋዜጣ። መብቱ በሕግ የተጠበቀ ነው።", "copyright"),
    ("This material may not be published, broadcast or rewritten.", "copyright"),
    ("This story originally appeared on The Conversation.", "attribution"),
    ("This story was first published on Carbon Brief.", "attribution"),
    ("This story is republished with permission.", "attribution"),
    ("Cet article a été initialement publié par Le Monde.", "attribution"),
    ("Dieser Artikel erschien zuerst bei Zeit Online.", "attribution"),
    ("Este artículo fue publicado originalmente en El País.", "attribution"),
    ("Este artigo foi originalmente publicado no Público.", "attribution"),
    ("Makala hii ilichapishwa kwa mara ya kwanza na BBC.", "attribution"),
    ("Get the best stories: sign up to our newsletter today.", "subscribe"),
]


@pytest.mark.parametrize("paragraph, reason", MARKER_PARAGRAPHS)
def test_every_marker_phrase_is_found_in_an_article(paragraph, reason):
    body = ["The council approved the budget on Tuesday after a long and heated debate in the chamber."] * 3
    assert remove_boilerplate([*body, paragraph]) == (body, {reason: 1}, None)


@pytest.mark.parametrize(
    "paragraph",
    [
        "Read more about the plans in the council's published report, which runs to 300 pages.",
        "By the end of the year, the company expects to have hired 200 more staff.",
        "By March the price had risen by a third.",
        "The regulator said the site used cookies to track children without consent, and fined it \u00a32m, the largest penalty of its kind.",
        "Copyright lawyers say the ruling could change how artists are paid.",
        "The home secretary will meet technology giants in the US to discuss how the UK government and tech players can work together.",
        "Ministers engage with big tech to tackle threat to democracy",
        "He said: \u201cShare the burden, share the reward.\u201d",
        "Contacts between the two governments have been frequent since the summit, officials said.",
        "Google.com is a search engine used by billions of people, the court heard.",
        "The price rose 24/7 during the crisis.",
    ],
)
def test_article_sentences_are_not_boilerplate(paragraph):
    assert boilerplate_reason(paragraph) is None


def test_a_related_heading_takes_its_link_list_along_and_stops_at_prose():
    paragraphs = [
        "The council approved the budget on Tuesday after a long debate.",
        "It will fund new schools and roads across the county from next year.",
        "Related articles",
        "Council tax to rise by 5% next year",
        "New school opens in Leeds",
        "The leader of the council said the plan was the best available option for residents.",
    ]
    kept, removed, _ = remove_boilerplate(paragraphs)
    assert kept == [paragraphs[0], paragraphs[1], paragraphs[5]]
    assert removed == {"related": 3}


def test_a_name_alone_at_the_end_is_the_byline_only_after_an_article():
    body = ["First paragraph of the story.", "Second paragraph of the story.", "Third paragraph of the story."]
    assert remove_boilerplate([*body, "Zoe Crowther"]) == (body, {"byline": 1}, "Zoe Crowther")
    assert remove_boilerplate(["Short item.", "Jane Doe"])[0] == ["Short item.", "Jane Doe"]


# --- metadata ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "HTTPS://WWW.Example.COM:443/News/Story/?utm_source=x&b=2&a=1&fbclid=3&gclid=4#top",
            "https://www.example.com/News/Story?a=1&b=2",
        ),
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
    "url, expected",
    [
        ("https://news.bbc.co.uk/a", "bbc.co.uk"),
        ("https://WWW.PolitMaster.com/x", "politmaster.com"),
        ("https://someone.blogspot.com/2024/post", "someone.blogspot.com"),
        ("http://127.0.0.1:8080/a", "127.0.0.1"),
        ("not a url", None),
    ],
)
def test_registrable_domain(url, expected):
    assert registrable_domain(url) == expected


@pytest.mark.parametrize(
    "title, sites, expected",
    [
        ("Ministers meet big tech | PoliticsHome", [], "Ministers meet big tech"),
        ("Ministers meet big tech | Politics | PoliticsHome", [], "Ministers meet big tech"),
        ("Ministers meet big tech - BBC News", ["bbc.co.uk", "bbc"], "Ministers meet big tech"),
        ("BBC News - Ministers meet big tech", ["bbc"], "Ministers meet big tech"),
        ("Ukraine - Russia talks resume", ["bbc"], "Ukraine - Russia talks resume"),
        ("  A \u00a0title\n", [], "A title"),
        ("", [], None),
    ],
)
def test_clean_title(title, sites, expected):
    assert clean_title(title, sites) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-03-01T10:00:00+01:00", "2024-03-01T09:00:00.000Z"),
        ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00.000Z"),
        ("2024-03-01T10:00:00+0100", "2024-03-01T09:00:00.000Z"),
        ("2024-03-01T10:00:00", "2024-03-01T10:00:00.000Z"),
        # as feeds send it: RSS (RFC 822/2822), ISO 8601 with a space and no zone, day-first numeric dates
        ("Tue, 10 Mar 2026 16:42:00 GMT", "2026-03-10T16:42:00.000Z"),
        ("Tue, 10 Mar 2026 16:42:00 +0100", "2026-03-10T15:42:00.000Z"),
        ("10 Mar 2026 11:42 EST", "2026-03-10T16:42:00.000Z"),
        ("2026-03-10 16:42", "2026-03-10T16:42:00.000Z"),
        ("2026-03-10", "2026-03-10T00:00:00.000Z"),
        ("10.03.2026", "2026-03-10T00:00:00.000Z"),
        ("10/03/2026 16:42", "2026-03-10T16:42:00.000Z"),
        ("05-03-2026", "2026-03-05T00:00:00.000Z"),  # ambiguous: day first
        ("03/15/2026", "2026-03-15T00:00:00.000Z"),  # month first: no 15th month
        ("  Tue,  10 Mar 2026\n16:42:00 GMT ", "2026-03-10T16:42:00.000Z"),
        ("Tue, 10 Mar 2026 16:42:00 CEST", None),  # a zone name RFC 2822 does not define is not guessed
        ("31.02.2026", None),
        ("13/13/2026", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_normalise_published_at(value, expected):
    assert normalise_published_at(value) == expected


@pytest.mark.parametrize(
    "published_at, expected",
    [
        ("Tue, 10 Mar 2026 16:42:00 GMT", "2026-03-10T16:42:00.000Z"),
        ("2026-03-10 16:42", "2026-03-10T16:42:00.000Z"),
        ("10.03.2026", "2026-03-10T00:00:00.000Z"),
        ("last Tuesday", None),
    ],
)
def test_an_article_keeps_its_body_and_the_raw_published_at_whatever_the_form(published_at, expected):
    result = normalised({"id": "a", "text": "The council met on Tuesday.", "published_at": published_at})
    validate_normalised(dataclasses.asdict(result.content))
    assert (result.content.published_at, result.content.published_at_raw) == (expected, published_at)
    assert result.content.text == "The council met on Tuesday."


@pytest.mark.parametrize(
    "text, repaired, repairs",
    [
        ("Don\u00e2\u20ac\u2122t stop at the Caf\u00c3\u00a9.", "Don\u2019t stop at the Caf\u00e9.", ("mojibake",)),
        (
            "Caf&eacute; &amp; bar &#8211; open &#x2014; daily",
            "Caf\u00e9 & bar \u2013 open \u2014 daily",
            ("html_entities",),
        ),
        ("Tom &amp;amp; Jerry", "Tom &amp; Jerry", ("html_entities",)),  # escaped twice: decoded once
        (
            "Don&rsquo;t \u00e2\u20ac\u0153quote\u00e2\u20ac\u009d",
            "Don\u2019t \u201cquote\u201d",
            ("html_entities", "mojibake"),
        ),
        ("AT&T and R&D; Q&A", "AT&T and R&D; Q&A", ()),  # no entities
        (
            "Caf\u00e9 \u00e0 la cr\u00e8me, \u201cquoted\u201d \u00c2ge",
            "Caf\u00e9 \u00e0 la cr\u00e8me, \u201cquoted\u201d \u00c2ge",
            (),
        ),
        ("\u00c3 \u00a9 apart, Sm\u00f8rrebr\u00f8d", "\u00c3 \u00a9 apart, Sm\u00f8rrebr\u00f8d", ()),
    ],
)
def test_repair_text_decodes_entities_and_undoes_mojibake_and_nothing_else(text, repaired, repairs):
    assert repair_text(text) == (repaired, repairs)


def test_an_article_with_mojibake_and_entities_is_repaired_in_title_and_body():
    result = normalised(
        {
            "id": "a",
            "title": "Caf&eacute; owners say Don\u00e2\u20ac\u2122t panic",
            "text": "Prices at the caf&eacute; rose.\n\nOwners Don\u00e2\u20ac\u2122t plan to close &amp; hope.",
        }
    )
    assert result.content.title == "Caf\u00e9 owners say Don\u2019t panic"
    assert result.content.text == "Prices at the caf\u00e9 rose.\n\nOwners Don\u2019t plan to close & hope."


def test_fields_satisfy_the_output_contract():
    result = normalised(
        {
            "id": "a1",
            "url": "https://www.Example.com/story?utm_campaign=x",
            "title": " A  title | Example ",
            "text": "By Jane Doe\nFirst paragraph.\nSecond paragraph here.",
            "published_at": "2024-03-01T10:00:00+01:00",
        }
    )
    validate_normalised(dataclasses.asdict(result.content))
    assert dataclasses.asdict(result.content) == {
        "article_id": "a1",
        "url": "https://www.Example.com/story?utm_campaign=x",
        "canonical_url": "https://www.example.com/story",
        "source": "example.com",
        "title": "A title",
        "byline": "Jane Doe",
        "text": "First paragraph.\n\nSecond paragraph here.",
        "word_count": 5,
        "published_at": "2024-03-01T09:00:00.000Z",
        "published_at_raw": "2024-03-01T10:00:00+01:00",
        "boilerplate_removed": {"byline": 1},
    }
    assert fingerprint(result.content.text) == "first paragraph\nsecond paragraph here"


def test_raw_source_wins_over_the_url_domain():
    result = normalised({"id": "a", "url": "https://example.com/x", "source": " Example  News ", "text": "Body."})
    assert result.content.source == "Example News"


# --- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"id": "a"}, DeadLetterReason.EMPTY_TEXT),
        ({"id": "a", "text": " \n\t "}, DeadLetterReason.EMPTY_TEXT),
        ({"id": "a", "text": "\u200b\u00ad\x07"}, DeadLetterReason.EMPTY_TEXT),
        ({"id": "a", "text": "Leave a Reply\n\nShare this article"}, DeadLetterReason.EMPTY_TEXT),
        ({"id": "a", "text": "* * *\n\n\u2014 \u2026"}, DeadLetterReason.EMPTY_TEXT),
        ({"id": "a", "text": "%PDF-1.4\n" + "\x00\x01\x02\x03\x04\x05\x06" * 200}, DeadLetterReason.BINARY_CONTENT),
        ({"id": "a", "html": "\x89PNG\r\n\x1a\n" + "\x00\x10\x02" * 300}, DeadLetterReason.BINARY_CONTENT),
        (
            {"id": "a", "html": "<html><body><p>" + "\ufffd\ufffd word " * 200 + "</p></body></html>"},
            DeadLetterReason.UNDECODABLE_HTML,
        ),
        ({"id": "a", "html": "<html><body><nav><a href='/'>Home</a></nav></body></html>"}, DeadLetterReason.EMPTY_TEXT),
    ],
    ids=["no-body", "blank", "invisible", "only-boilerplate", "no-words", "pdf", "png", "mojibake", "no-content"],
)
def test_bad_input_is_rejected_with_a_reason(raw, reason):
    with pytest.raises(Rejected) as rejection:
        normalised(raw)
    assert rejection.value.reason is reason


# --- HTML ---------------------------------------------------------------------

STORY = [
    f"Paragraph {n} of the story has enough words for the extractor to treat it as the article's content, and it goes on."
    for n in range(6)
]
PAGE = (
    "<html><head><title>Ministers meet big tech | PoliticsHome</title>"
    "<meta property='og:site_name' content='PoliticsHome'><meta name='author' content='Zoe Crowther'>"
    "<meta property='article:published_time' content='2024-03-01T10:00:00+01:00'></head><body>"
    "<nav><a href='/'>Home</a> | <a href='/world'>World</a> | <a href='/politics'>Politics</a></nav>"
    "<main><article><h1>Ministers meet big tech</h1>"
    + "".join(f"<p>{p}</p>" for p in STORY)
    + "<p>Read more on politicshome.com</p></article></main>"
    "<aside><h3>Related content</h3><ul><li><a href='/x'>Another story entirely</a></li></ul></aside>"
    "<div id='comments'><h3>Leave a Reply</h3><p>Your email address will not be published.</p></div>"
    "<footer>\u00a9 2024 PoliticsHome. All rights reserved.</footer></body></html>"
)


def test_html_article_keeps_the_story_and_reads_its_metadata():
    result = normalised({"id": "h", "url": "https://www.politicshome.com/news/x?utm_source=tw", "html": PAGE})
    validate_normalised(dataclasses.asdict(result.content))
    assert result.content.text.split("\n\n") == ["Ministers meet big tech", *STORY]
    assert result.content.title == "Ministers meet big tech"
    assert result.content.byline == "Zoe Crowther"
    assert result.content.published_at == "2024-03-01T09:00:00.000Z"
    assert result.content.source == "politicshome.com"


def test_raw_title_and_date_win_over_the_page():
    result = normalised({"id": "h", "title": "Given", "published_at": "2024-05-05T00:00:00Z", "html": PAGE})
    assert (result.content.title, result.content.published_at) == ("Given", "2024-05-05T00:00:00.000Z")


def test_html_fragment_is_extracted():
    page = extract_html("<div>" + "".join(f"<p>{p}</p>" for p in STORY) + "</div>")
    assert clean_text(page.text) == STORY


# --- per-source template learning -------------------------------------------

# A site template that no generic pattern knows: only recurrence gives it away.
HEADER = "Acme Daily brings you hand-picked stories every morning, chosen by our editors in Leeds and Bradford."
FOOTER = "Acme Daily is printed on recycled paper by Northern Presses of Halifax."


def acme(article_id: str, body: str, offset: int = 0) -> Article:
    url = f"https://www.acme-daily.co.uk/news/{article_id}"
    return article({"id": article_id, "url": url, "text": f"{HEADER}\n\n{body}\n\n{FOOTER}"}, offset)


class SourceState:
    """What the stateful DoFn does for one key, without Beam."""

    def __init__(self):
        self.history: list = []

    def normalise(self, raw_article: Article) -> Article:
        draft = draft_article(raw_article)
        seen, indices = seen_article(draft)
        template = frozenset(indices[p] for p in template_paragraphs(self.history, seen))
        self.history = decode_history(encode_history(remember(self.history, seen)))
        return finish(draft, template)


@pytest.fixture(scope="module")
def bodies():
    found = distinct_bodies()
    assert len(found) > RECENT_ARTICLES
    return found


def test_template_is_learned_from_the_second_distinct_article(bodies):
    source = SourceState()
    results = [source.normalise(acme(f"a{n}", body)) for n, body in enumerate(bodies[:4])]
    assert HEADER in results[0].content.text and FOOTER in results[0].content.text
    for result in results[1:]:
        assert HEADER not in result.content.text and FOOTER not in result.content.text
        assert result.content.boilerplate_removed == {"source_template": 2}
    for result, body in zip(results, bodies):
        assert all(paragraph in result.content.text for paragraph in clean_text(body))


def test_copies_of_one_article_do_not_make_its_paragraphs_template(bodies):
    source = SourceState()
    source.normalise(acme("first", bodies[0]))
    again = source.normalise(acme("first", bodies[0]))  # redelivered
    copy = source.normalise(acme("first-amp", bodies[0]))  # the same story under another id
    near_copy = source.normalise(acme("first-updated", bodies[0] + "\nUpdate: the minister has since resigned."))
    for result in (again, copy, near_copy):
        assert all(paragraph in result.content.text for paragraph in clean_text(bodies[0]))
        assert HEADER in result.content.text  # nothing distinct has shown the template yet
    other = source.normalise(acme("second", bodies[1]))
    assert HEADER not in other.content.text
    assert all(paragraph in other.content.text for paragraph in clean_text(bodies[1]))


def test_a_paragraph_in_a_few_of_many_recent_articles_is_not_template(bodies):
    quote = "\u201cWe will not comment on individual cases,\u201d a Home Office spokesperson said."
    source = SourceState()
    for n, body in enumerate(bodies[:RECENT_ARTICLES]):
        source.normalise(acme(f"a{n}", body + (f"\n{quote}" if n % 8 == 0 else "")))
    result = source.normalise(acme("late", bodies[RECENT_ARTICLES] + f"\n{quote}"))
    assert quote in result.content.text
    assert HEADER not in result.content.text


def _template_by_pairwise_copies(history: list[SeenArticle], seen: SeenArticle) -> set[int]:
    """`template_paragraphs` by its definition: distinct articles picked by comparing every pair (slow)."""
    others = [other for other in history if other.article != seen.article]
    if not others:
        return set()
    needed = max(MIN_DISTINCT_ARTICLES, math.ceil(TEMPLATE_SHARE * (len(others) + 1)))
    frequency = collections.Counter(itertools.chain.from_iterable(other.paragraph_set for other in others))
    everyone = {-1: seen, **dict(enumerate(others))}
    own = {
        index: {p: n for p, n in zip(article.paragraphs, article.lengths) if frequency[p] < 2}
        for index, article in everyone.items()
    }

    def are_copies(a: int, b: int) -> bool:
        smaller = min(sum(own[a].values()), sum(own[b].values()))
        return smaller == 0 or sum(n for p, n in own[a].items() if p in own[b]) >= COPY_OVERLAP * smaller

    template = set()
    for position, paragraph in enumerate(seen.paragraphs):
        distinct = [-1]
        for candidate in reversed([index for index, other in enumerate(others) if paragraph in other.paragraph_set]):
            if not any(are_copies(accepted, candidate) for accepted in distinct):
                distinct.append(candidate)
        if len(distinct) >= needed:
            template.add(position)
    return template


def test_template_paragraphs_match_their_pairwise_definition():
    generator = random.Random(11)
    checked = 0
    for _ in range(400):
        # Few paragraphs to draw from, so articles share some, copy each other, repeat one, or have no own paragraph.
        pool = range(generator.randint(3, 40))

        def article_of(number: int) -> SeenArticle:
            paragraphs = tuple(generator.choices(pool, k=generator.randint(1, 12)))
            return SeenArticle(number % 40, paragraphs, tuple(generator.randint(1, 300) for _ in paragraphs))

        history = [article_of(number) for number in range(generator.randint(0, RECENT_ARTICLES))]
        seen = generator.choice(history) if history and generator.random() < 0.1 else article_of(1000)
        expected = _template_by_pairwise_copies(history, seen)
        assert template_paragraphs(history, seen) == expected
        checked += bool(expected)
    assert checked > 50


def test_paragraphs_differing_in_digits_of_any_script_are_one_template_line():
    def hashes(line: str) -> tuple[int, ...]:
        raw = {"id": line, "url": "https://example.com/a", "text": f"{line}\n\nThe story itself, told in full."}
        return seen_article(draft_article(article(raw)))[0].paragraphs

    # ASCII, Arabic-Indic and (beyond the BMP) Osmanya digits
    assert (
        hashes("Updated 3 March")
        == hashes("Updated 12 March")
        == hashes("Updated \u0661\u0662 March")
        == hashes("Updated \U000104a1\U000104a2 March")
    )
    assert hashes("Updated 3 March") != hashes("Updated March")


def test_source_history_is_bounded():
    source = SourceState()
    long_body = "\n".join(f"Paragraph number {n} of a very long article about many things." for n in range(500))
    for n in range(RECENT_ARTICLES + 10):
        source.normalise(acme(f"long{n}", f"Unique opening {n}.\n{long_body}"))
    assert len(source.history) == RECENT_ARTICLES
    assert len(encode_history(source.history)) <= MAX_HISTORY_BYTES


# Format 1 of two remembered articles, byte for byte: a layout change must come with a new format number.
HISTORY_FORMAT_1 = bytes.fromhex(
    "01020007000000000000000900000000000000020000000100000000000000ffffffffffffffff0a00ffff"
)


def test_source_history_state_is_versioned_plain_data():
    history = [SeenArticle(7, (1, 2**64 - 1), (10, 0xFFFF)), SeenArticle(9, (), ())]
    assert encode_history(history) == HISTORY_FORMAT_1
    assert decode_history(HISTORY_FORMAT_1) == history
    assert decode_history(encode_history([])) == [] and decode_history(None) == []
    with pytest.raises(ValueError, match="format 2; this wirecopy reads format 1"):
        decode_history(b"\x02" + HISTORY_FORMAT_1[1:])


# --- the transform ----------------------------------------------------------


def _summary(result: Article) -> tuple:
    return (
        result.article_id,
        result.content.source,
        result.content.boilerplate_removed.get("source_template", 0),
    )


def test_normalise_transform(bodies):
    earlier = DeadLetter(DeadLetterReason.INVALID_JSON, "not JSON", "Decode", SourceRecord("raw", 0, 99, b"{"))
    inputs = [
        earlier,
        article({"id": SCRAPER_COPY.stem, "text": SCRAPER_COPY.read_text(encoding="utf-8")}, 0),
        article({"id": "page", "url": "https://politicshome.com/news/x", "html": PAGE}, 1),
        article({"id": "empty", "text": "   "}, 2),
        article({"id": "binary", "html": "\x00\x01\x02\x03" * 100}, 3),
        article({"id": "undated", "text": "Body.", "published_at": "not a date"}, 4),
        *(acme(f"acme{n}", body, 10 + n) for n, body in enumerate(bodies[:5])),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outcomes = pipeline | beam.Create(inputs) | Normalise()
        articles = outcomes | "Articles" >> beam.Filter(lambda outcome: isinstance(outcome, Article))
        fields = articles | "Fields" >> beam.Map(
            lambda a: validate_normalised(dataclasses.asdict(a.content)) and a.article_id
        )
        assert_that(
            fields, equal_to([SCRAPER_COPY.stem, "page", "undated", *(f"acme{n}" for n in range(5))]), label="valid"
        )
        # The first acme article processed shows the template for the first time; every later one loses it.
        learned = articles | "Learned" >> beam.Map(_summary) | beam.Filter(lambda s: s[1] == "acme-daily.co.uk")
        assert_that(learned | beam.Map(lambda s: s[2]), equal_to([0] + [2] * 4), label="learned")
        letters = outcomes | "Letters" >> beam.Filter(lambda outcome: isinstance(outcome, DeadLetter))
        reasons = letters | beam.Map(lambda letter: (letter.article_id, letter.reason, letter.stage))
        assert_that(
            reasons,
            equal_to(
                [
                    (None, DeadLetterReason.INVALID_JSON, "Decode"),
                    ("empty", DeadLetterReason.EMPTY_TEXT, "Normalise"),
                    ("binary", DeadLetterReason.BINARY_CONTENT, "Normalise"),
                ]
            ),
            label="dead",
        )
        assert_that(
            outcomes | "Kinds" >> beam.Map(lambda outcome: type(outcome).__name__),
            equal_to(["DeadLetter"] * 3 + ["Article"] * 8),
            label="one stream",
        )


def test_the_transform_counts_repairs_and_unreadable_dates():
    inputs = [
        article({"id": "entities", "text": "Fish &amp; chips at the caf&eacute;.", "published_at": "10.03.2026"}, 0),
        article(
            {"id": "mojibake", "title": "Don\u00e2\u20ac\u2122t", "text": "Plain body.", "published_at": "soon"}, 1
        ),
        article({"id": "clean", "text": "Plain body, no repairs.", "published_at": "Tue, 10 Mar 2026 16:42:00 GMT"}, 2),
    ]
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outcomes = pipeline | beam.Create(inputs) | Normalise()
        dates = outcomes | beam.Map(lambda a: (a.article_id, a.content.published_at, a.content.published_at_raw))
        assert_that(
            dates,
            equal_to(
                [
                    ("entities", "2026-03-10T00:00:00.000Z", "10.03.2026"),
                    ("mojibake", None, "soon"),
                    ("clean", "2026-03-10T16:42:00.000Z", "Tue, 10 Mar 2026 16:42:00 GMT"),
                ]
            ),
        )
    counters = {m.key.metric.name: m.committed for m in pipeline.result.metrics().query()["counters"]}
    assert counters["normalise_repaired_html_entities"] == 1
    assert counters["normalise_repaired_mojibake"] == 1
    assert counters["normalise_published_at_unparsable"] == 1


def test_an_empty_result_says_whether_boilerplate_or_nothing_at_all_was_there():
    with pytest.raises(Rejected) as boilerplate_only:
        normalised({"id": "a", "text": "Leave a Reply\n\nShare this article"})
    assert boilerplate_only.value.detail.startswith("no text left after cleaning: every paragraph was boilerplate (")
    with pytest.raises(Rejected) as invisible_only:
        normalised({"id": "a", "text": "\u200b\u00ad\x07\n\n \t"})
    assert invisible_only.value.detail == (
        "no text left after cleaning: only white space and control or invisible characters"
    )
