"""Normalise stage: the article and nothing else, its metadata, and its fingerprint.

Input is a raw article with plain `text` or `html`. HTML goes through
trafilatura, chosen for extraction quality: it scores best (F1 0.924) on its
public extraction benchmark, also reads the title, author and date, and drops
comment sections; resiliparse is faster there but extracts less accurately
and reads no metadata. Plain text is the fast path (see
`benchmarks/bench_normalise.py` for both speeds).

`text` stays readable: Unicode NFC, typography kept; control characters,
soft hyphens, zero-width characters and non-breaking spaces cleaned;
paragraphs separated by exactly one blank line. `fingerprint(text)` is the
separate matching form the syndication stage consumes.

Boilerplate is removed paragraph by paragraph, and counted per reason in
`boilerplate_removed`:

* generic multilingual patterns ("Read more on X", comment forms, related
  links, share/subscribe/cookie lines, copyright, navigation, contact blocks,
  site self-descriptions, syndication notes, bylines) in every article;
* `source_template`: paragraphs learned per source. Articles are keyed by
  their source domain (the URL's registrable domain, else the raw `source`;
  articles with neither skip this step) and a stateful DoFn keeps, per
  source, the paragraph hashes of its `RECENT_ARTICLES` most recent articles
  (at most `MAX_HISTORY_BYTES`, 31 KB, per source; typically under 10 KB).
  A paragraph is template when it recurs in at least `MIN_DISTINCT_ARTICLES`
  articles of the source, and in at least `TEMPLATE_SHARE` of the recent
  ones, counting copies of one article (at-least-once redelivery, or the same
  story filed twice) once. All of a source's state lives under its key, so
  the result does not depend on which worker holds which source. The first
  article of a new source is emitted at once with pattern removal only:
  holding it back until its template recurs would need a timer or an
  unbounded wait for a source that may never publish again, so its template
  paragraphs leak until the second article shows them (the third, when the
  template outweighs the articles' own text, since two such articles look
  like copies).

Bad input never stops the pipeline: no text, nothing left after cleaning,
binary data and undecodable HTML become `empty_text`, `binary_content` and
`undecodable_html` dead letters. An unreadable `published_at` is not worth
losing an article over: it becomes None (`published_at_raw` keeps what the
feed sent), the `normalise_published_at_unparsable` counter counts it and
the first one is logged. HTML entities and mojibake in a plain-text body or
title are repaired (`repair_text`) and counted
(`normalise_repaired_html_entities`, `normalise_repaired_mojibake`).
"""

from __future__ import annotations

import array
import bisect
import collections
import dataclasses
import hashlib
import html
import itertools
import logging
import math
import re
import struct
import sys
import unicodedata
import urllib.parse
from typing import Any, Iterable, Iterator

import apache_beam as beam
import courlan  # trafilatura's own URL library: registrable domains from its bundled public suffix list
import ftfy
import trafilatura
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.schemas.codec import utc_timestamp
from wirecopy.schemas.published_at import parse_published_at
from wirecopy.schemas.records import Article, DeadLetterReason, Rejected, SourceRecord
from wirecopy.transforms.stage import Outcome, StatefulStageFn, run_stage

_LOG = logging.getLogger(__name__)

STAGE = "Normalise"

# Per-source memory: the paragraph hashes of this many recent articles...
RECENT_ARTICLES = 32
# ...of at most this many paragraphs each (the first and last halves: templates sit at the ends).
TRACKED_PARAGRAPHS = 96
# A template paragraph recurs in this many distinct articles of a source...
MIN_DISTINCT_ARTICLES = 2
# ...and in at least this share of its recent articles.
TEMPLATE_SHARE = 0.25
# Two articles whose non-template paragraphs (by characters) overlap this much are copies.
COPY_OVERLAP = 0.5

# --- readable text ----------------------------------------------------------

# Wire feeds that lost the high byte of UTF-16 typography leave C0 controls
# where quotes and dashes were (U+2019 -> U+0019); restoring them keeps the
# word ("don\x19t" -> "don’t") instead of gluing or splitting it.
_LOST_HIGH_BYTE = {0x13: "\u2013", 0x14: "\u2014", 0x18: "\u2018", 0x19: "\u2019", 0x1C: "\u201c", 0x1D: "\u201d"}


def _cleanup_map() -> dict[str, str]:
    mapping = {chr(code): "" for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]}
    mapping.update({chr(code): char for code, char in _LOST_HIGH_BYTE.items()})
    mapping.update({"\x0b": "\n", "\x0c": "\n", "\r": "\n", "\t": " "})
    # C1 controls in news text are almost always Windows-1252 bytes decoded as
    # Latin-1 (0x92 is a right quote, 0x85 an ellipsis); the rest are noise.
    for code in range(0x80, 0xA0):
        try:
            mapping[chr(code)] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            mapping[chr(code)] = ""
    for char in "\u00ad\u200b\u2060\ufeff\u180e":  # soft hyphen, zero-width spaces, BOM
        mapping[char] = ""
    for char in "\u00a0\u1680\u2007\u202f\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2008\u2009\u200a\u205f\u3000":
        mapping[char] = " "
    mapping["\u2028"] = "\n"
    mapping["\u2029"] = "\n\n"
    return mapping


_CLEANUP = _cleanup_map()
_CLEANUP_CLASS = "".join(re.escape(char) for char in _CLEANUP)
_CLEANUP_CHARS = re.compile(f"[{_CLEANUP_CLASS}]")
_SPACES = re.compile(r"  +")
# Wire feeds end each paragraph with a `<` marker.
_WIRE_LINE_END = re.compile(r"\s*<+\s*$")
_SENTENCE_END = tuple(".!?:;…。！？\"”»)]’'")


# An entity needs its semicolon here: "AT&T" or "R&D" in plain text are no entities.
_HTML_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
# UTF-8 read as Windows-1252 turns each non-ASCII character into a lead
# character (Â-ô) and one or more of the continuation bytes 0x80-0xBF as
# Windows-1252 shows them. Only text holding such a pair goes to ftfy, whose
# check costs ~10 ms on a 3 KB article (measured on the samples), more than
# the whole pipeline spends on one.
_MOJIBAKE_PAIR = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152"
    "\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178]"
)


def repair_text(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` with HTML entities decoded (`Caf&eacute;`, `&amp;`) and mojibake undone (`Donâ€™t`), and which
    of the two repairs (`html_entities`, `mojibake`) changed it. Feeds that put HTML-escaped or doubly
    encoded text into a plain-text field do both."""
    repairs = []
    if "&" in text and _HTML_ENTITY.search(text):
        unescaped = _HTML_ENTITY.sub(lambda entity: html.unescape(entity.group()), text)
        if unescaped != text:
            text = unescaped
            repairs.append("html_entities")
    if not text.isascii() and _MOJIBAKE_PAIR.search(text):
        fixed = ftfy.fix_encoding(text)  # only the encoding: typography (curly quotes, widths) stays as written
        if fixed != text:
            text = fixed
            repairs.append("mojibake")
    return text, tuple(repairs)


def clean_text(text: str, plain: bool = False) -> list[str]:
    """Readable paragraphs of `text`, each one line, in order.

    A blank line ends a paragraph. A single line break also starts one
    (feeds put one paragraph per line), except where it only wraps a
    sentence: the line does not end a sentence and the next starts lower-case.
    A paragraph's only whitespace is single spaces between its words.
    `plain`: the caller found `text` plain (`is_plain_text`), so it needs neither cleanup nor NFC.
    """
    if not plain and _CLEANUP_CHARS.search(text):
        text = _CLEANUP_CHARS.sub(lambda match: _CLEANUP[match.group()], text.replace("\r\n", "\n"))
    if not plain and not text.isascii() and not unicodedata.is_normalized("NFC", text):  # ASCII is NFC; isascii() is free
        text = unicodedata.normalize("NFC", text)
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if "<" not in text and "\n\n\n" not in text and text.count("\n") == 2 * text.count("\n\n"):
        # Every line break is in a blank line and no line ends with a wire marker: no line to join or trim.
        return [paragraph for paragraph in map(str.strip, text.split("\n\n")) if paragraph]
    paragraphs: list[str] = []
    continuable = False
    for line in text.split("\n"):
        line = line.strip()
        marked_end = line.endswith("<")
        if marked_end:
            line = _WIRE_LINE_END.sub("", line)
        if not line:
            continuable = False
            continue
        if continuable and line[0].islower() and not paragraphs[-1].endswith(_SENTENCE_END):
            paragraphs[-1] = paragraphs[-1] + ("" if paragraphs[-1].endswith("-") else " ") + line
        else:
            paragraphs.append(line)
        continuable = not marked_end
    return paragraphs


# --- fingerprint ------------------------------------------------------------


def _character_class(categories: tuple[str, ...], codes: Iterable[int]) -> str:
    """A regex class of the `codes` whose Unicode category starts with one of `categories`."""
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if unicodedata.category(chr(code)).startswith(categories) and code != 0x0A:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    parts = []
    for start, end in ranges:
        if 0xD800 <= start <= 0xDFFF:
            continue
        parts.append(re.escape(chr(start)) if start == end else f"{re.escape(chr(start))}-{re.escape(chr(end))}")
    return "[" + "".join(parts) + "]"


# `re` matches a class within the Basic Multilingual Plane by table lookup but
# scans one with higher code points range by range, 20x slower: the rare
# characters beyond the BMP (emoji, historic scripts) get their own pass.
# Planes 3-13 hold nothing but letters or unassigned code points.
_NON_WORD_BMP_CLASS = _character_class(("P", "S", "Cc", "Co"), range(0x10000))
# Runs are written `[x][x]*`, not `[x]+`: `re` skips ahead to a pattern's first
# character only when the pattern starts with a plain class (1.5x faster here).
_NON_WORD_BMP = re.compile(_NON_WORD_BMP_CLASS + _NON_WORD_BMP_CLASS + "*")
# A run of non-word characters and the spaces after it (without a leading " ?",
# which would make every space a possible start: twice as slow).
_NON_WORD_SPAN = re.compile(_NON_WORD_BMP_CLASS + _NON_WORD_BMP_CLASS[:-1] + " ]*")
_NON_WORD_ASTRAL_CLASS = _character_class(
    ("P", "S", "Co", "Cf"), itertools.chain(range(0x10000, 0x30000), range(0xE0000, sys.maxunicode + 1))
)
_NON_WORD_ASTRAL = re.compile(_NON_WORD_ASTRAL_CLASS + _NON_WORD_ASTRAL_CLASS + "*")
# A token without a letter, mark or digit ("–", "*", "…") in text whose only whitespace is single spaces.
_NON_WORD_TOKEN = re.compile(" " + _NON_WORD_BMP_CLASS + "+(?= )")
# Format characters (zero-width joiners, soft hyphens) sit inside words.
_FORMAT_CLASS = _character_class(("Cf",), range(0x10000))
_FORMAT = re.compile(_FORMAT_CLASS + _FORMAT_CLASS + "*")
# Apostrophe look-alikes that Unicode files as letters (ʼ ʻ ʽ) rather than
# punctuation; unified so that they vanish with the other apostrophes.
_APOSTROPHE_LETTERS = re.compile("[\u02bb\u02bc\u02bd]")
# One scan tells whether any of the rarely needed passes applies.
_RARE = re.compile("(?:" + _FORMAT_CLASS + "|[\u02bb\u02bc\u02bd]|[\U00010000-\U0010FFFF])")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


def _fold(text: str) -> str:
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    rare = _RARE.search(text) is not None
    if rare:
        text = _APOSTROPHE_LETTERS.sub("'", _FORMAT.sub("", text))
    text = _NON_WORD_BMP.sub(" ", text.casefold())
    return _NON_WORD_ASTRAL.sub(" ", text) if rare else text


def fingerprint(text: str) -> str:
    """The matching form of `text` (the contract the syndication stage relies on).

    NFKC, case-folded; every punctuation, symbol and control character
    (quotes, apostrophes, dashes and ellipses included, so their variants all
    unify) becomes a space; format characters (zero-width, soft hyphen) go;
    letters, marks and digits of every script stay; whitespace collapses to
    single spaces inside a paragraph; paragraphs (separated by a blank line in
    `text`) are joined with "\\n", empty ones dropped.
    """
    paragraphs = (" ".join(paragraph.split()) for paragraph in _PARAGRAPH_BREAK.split(_fold(text)))
    return "\n".join(paragraph for paragraph in paragraphs if paragraph)


def paragraph_fingerprints(paragraphs: list[str], plain: bool = False) -> list[str]:
    """`fingerprint` of each paragraph of `clean_text`, aligned with the input (empty where no word is left).

    `plain`: the paragraphs are of a text found plain (`is_plain_text`), so NFKC and free of rare characters.
    """
    text = "\n".join(paragraphs)
    # ASCII is NFKC and holds no rare character; isascii() costs nothing.
    if not plain and not text.isascii() and (not unicodedata.is_normalized("NFKC", text) or _RARE.search(text)):
        return [" ".join(line.split()) for line in _fold(text).split("\n")]
    # The words are single-spaced: a span replaced after a space leaves a double
    # space, and a space can be left at either end of a line; nothing else.
    folded = _NON_WORD_SPAN.sub(" ", text.casefold()).replace("  ", " ")
    return [line.strip(" ") for line in folded.split("\n")]


# What a plain text must not hold: the characters cleanup maps, those `check_not_binary`
# counts, and those the fingerprint drops or unifies (format characters, apostrophe letters).
_NEEDS_CARE = re.compile(f"[{_CLEANUP_CLASS}\ufffd\ufffe\uffff{_FORMAT_CLASS[1:-1]}\u02bb-\u02bd]")


def _within_bmp(text: str) -> bool:
    # A character beyond the BMP takes two UTF-16 code units: encoding finds one far faster than a regex.
    return len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text)


def is_plain_text(text: str) -> bool:
    """Whether `text` needs none of the care above: it is NFKC and holds none of those characters nor any beyond the BMP.

    One scan tells cleanup, the binary check and the fingerprint that they have nothing to do.
    """
    return (
        _NEEDS_CARE.search(text) is None
        and _within_bmp(text)
        and (text.isascii() or unicodedata.is_normalized("NFKC", text))
    )


def word_count(text: str) -> int:
    """Whitespace-separated tokens that hold at least one letter, mark or digit."""
    tokens = text.split()
    return len(tokens) - len(_NON_WORD_TOKEN.findall(" " + " ".join(tokens) + " "))


def clean_word_count(paragraphs: list[str]) -> int:
    """`word_count` of paragraphs of `clean_text`, at least one: their single spaces count the tokens without splitting."""
    spaced = " ".join(paragraphs)
    return spaced.count(" ") + 1 - len(_NON_WORD_TOKEN.findall(f" {spaced} "))


# --- boilerplate patterns ---------------------------------------------------


def _phrases(*phrases: str) -> str:
    return "(?:" + "|".join(phrases) + ")"


# Whole-paragraph headings and chrome, matched on the lower-cased paragraph
# stripped of decoration (arrows, bullets, colons). One named group per reason.
_CHROME = re.compile(
    "(?:"
    + "|".join(
        f"(?P<{reason}>{pattern})"
        for reason, pattern in [
            (
                "related",
                _phrases(
                    r"related(?: content| articles?| stories| news| posts?| coverage| topics| links| reading)?",
                    r"you (?:may|might) (?:also )?(?:like|enjoy|be interested in)", r"recommended(?: for you| stories| articles| reading)?",
                    r"more (?:stories|news|articles|headlines)", r"more (?:from|on|in) [^.!?]{1,40}", r"most (?:read|popular|viewed|shared)",
                    r"trending(?: now| stories)?", r"top stories", r"latest (?:news|stories|articles)", r"editor[’']?s picks",
                    r"see also", r"also read", r"read also", r"articles (?:similaires|liés)", r"sur le même sujet",
                    r"(?:à|a) (?:lire|voir) (?:aussi|également)", r"lire (?:aussi|également)", r"voir aussi", r"les plus lus",
                    r"dans la même rubrique", r"vous (?:aimerez|pourriez aimer) aussi", r"(?:ähnliche|verwandte|weitere) artikel",
                    r"mehr zum thema", r"das könnte sie auch interessieren", r"auch interessant", r"meistgelesen(?:e artikel)?",
                    r"lesen sie auch", r"siehe auch", r"(?:artículos|noticias) relacionad[oa]s", r"(?:también )?te puede interesar",
                    r"lo más leído", r"más noticias", r"lee también", r"ver también", r"(?:artigos|notícias) relacionad[oa]s",
                    r"leia também", r"veja também", r"você também pode gostar", r"mais lidas", r"articoli correlati",
                    r"potrebbe interessarti", r"leggi anche", r"gerelateerde artikelen", r"lees ook",
                    r"habari (?:zinazohusiana|nyingine|zaidi)", r"makala zinazohusiana", r"soma pia",
                    r"labarai masu ala(?:ƙ|k)a", r"karanta kuma", r"wasu labarai", r"ተዛማጅ (?:ዜናዎች|ጽሁፎች)", r"ተጨማሪ ዜናዎች",
                )
                + r"(?:\s*[:：\-–—]\s+.{1,200})?$",
            ),
            (
                "read_more",
                _phrases(
                    r"read more", r"read the (?:full|whole|rest of the|original) (?:story|article)", r"read (?:the )?full (?:story|article)",
                    r"continue reading", r"keep reading", r"click here to read", r"full story", r"lire la suite", r"lire plus",
                    r"lisez la suite", r"la suite (?:sur|de l[’']article)", r"weiterlesen", r"mehr lesen",
                    r"lesen sie (?:hier )?(?:mehr|weiter|den ganzen artikel)", r"zum (?:ganzen|vollständigen) artikel", r"leer más",
                    r"seguir leyendo", r"sigue leyendo", r"leia mais", r"continu(?:e|ar) lendo", r"leggi (?:di più|tutto)",
                    r"continua a leggere", r"lees (?:meer|verder)", r"soma zaidi", r"endelea kusoma", r"soma habari kamili",
                    r"karanta (?:karin bayani|cikakken labarin)", r"ተጨማሪ ያንብቡ", r"ሙሉውን ያንብቡ",
                )
                # alone, before a colon or dash and a headline, or before where to read it
                + r"(?:$|\s*[:：|\-–—]\s*.{0,200}$|\s+(?:on|at|in|from|sur|dans|auf|bei|en|em|su|op|kwenye)\s+\S+(?:\s+\S+){0,5}$)",
            ),
            (
                "learn_more",
                _phrases(
                    r"learn more", r"find out more", r"more info(?:rmation)?", r"click here", r"en savoir plus", r"plus d[’']infos?",
                    r"mehr erfahren", r"mehr infos?", r"más información", r"saber más", r"saiba mais", r"scopri di più",
                    r"meer informatie", r"(?:pata )?maelezo zaidi", r"(?:ƙ|k)arin bayani", r"ተጨማሪ መረጃ",
                )
                + "$",
            ),
            (
                "comment_form",
                _phrases(
                    r"leave a (?:reply|comment)", r"post a comment", r"add (?:a|your) comment", r"(?:\d+ )?comments?(?: \(\d+\))?$",
                    r"notify me of (?:follow-up comments|new posts|new comments)", r"save my name,? email,? and website",
                    r"cancel reply$", r"you must be (?:logged|signed) in to (?:post|leave) a comment", r"join the (?:conversation|discussion)",
                    r"comments are closed", r"be the first to comment", r"(?:name|email|e-mail|website|comment) ?\*$",
                    r"(?:submit|post|show|view) comments?$", r"laisser un commentaire", r"laisser une réponse", r"commentaires?$",
                    r"ajouter un commentaire", r"annuler la réponse$", r"schreiben? (?:sie )?einen kommentar",
                    r"kommentar (?:schreiben|verfassen|hinterlassen|abschicken)", r"kommentare?$", r"antworten abbrechen$",
                    r"posting (?:schreiben|verfassen)", r"deja (?:un comentario|una respuesta)", r"dejar un comentario", r"comentarios?$",
                    r"cancelar respuesta$", r"deixe (?:um comentário|uma resposta)", r"comentários?$", r"lascia un commento",
                    r"commenti$", r"acha (?:maoni|jibu)", r"toa maoni(?: yako)?$", r"maoni$",
                ),
            ),
            (
                "share",
                _phrases(
                    r"share(?: this| on| via| the| article| story| post|$|:)", r"click to share", r"tweet$",
                    r"(?:follow us|follow|like us) on (?:facebook|twitter|x|instagram|linkedin|youtube|tiktok|telegram|whatsapp)",
                    r"suivez-nous", r"partager(?: sur| cet article| l[’']article|$)", r"folgen sie uns", r"(?:artikel |auf \w+ )?teilen$",
                    r"compartir(?: en| este|$)", r"síguenos", r"compartilh(?:e|ar)", r"siga-nos", r"condividi", r"seguici",
                    r"delen$", r"shiriki(?: habari hii| makala hii| kwenye|$)", r"tufuate", r"raba wannan", r"ይህንን ያጋሩ", r"ያጋሩ$",
                ),
            ),
            (
                "subscribe",
                _phrases(
                    r"subscribe(?: now| today| to| for|$)", r"sign up (?:for|to) (?:our|the|free)", r"sign up for free",
                    r"get (?:our|the) (?:free )?(?:daily |weekly )?newsletter", r"(?:join|get) our newsletter", r"newsletter$",
                    r"enter your e-?mail", r"s[’']abonner", r"abonnez-vous", r"inscrivez-vous (?:à|a) (?:notre|la) newsletter",
                    r"recevez (?:notre|la) newsletter", r"(?:jetzt )?abonnieren", r"newsletter abonnieren",
                    r"melden sie sich (?:jetzt )?für (?:unseren|den) newsletter an", r"zum newsletter anmelden", r"suscr[ií]b(?:ete|irse)",
                    r"assine", r"inscreva-se", r"iscriviti", r"abbonati", r"abonneer", r"jiandikishe", r"jisajili", r"yi rijista",
                    r"(?:ደንበኝነት )?ይመዝገቡ",
                ),
            ),
            ("copyright", r"(?:©|\(c\)\s|℗|copyright\s*(?:©|\(c\)|\d{4}))"),
            (
                "navigation",
                _phrases(
                    r"skip to (?:main )?(?:content|navigation)", r"(?:main )?menu", r"toggle navigation", r"search", r"back to top",
                    r"home(?:page)?", r"(?:previous|next) (?:article|post|story)", r"article (?:précédent|suivant)", r"accueil",
                    r"startseite", r"(?:nächster|vorheriger) artikel", r"inicio", r"página inicial", r"nyumbani", r"(?:ዋና|መነሻ) ገጽ",
                    r"you are here:? .{1,150}",
                )
                + "$",
            ),
            (
                "contact",
                _phrases(
                    r"contacts?(?: us| information| info| details)?$", r"get in touch$", r"contact the (?:newsroom|editor|author)$",
                    r"kontakte?$", r"contactez-nous$", r"nous contacter$", r"cont(?:a|á)ct(?:o|os|enos)$", r"fale conosco$", r"contatti$",
                    r"wasiliana nasi$", r"mawasiliano$", r"አግኙን$",
                    r"(?:tel(?:ephone)?|phone|fax|e-?mail|mobile|whatsapp|address|adresse|anschrift|téléphone|telefon|telefono|teléfono"
                    r"|simu|barua pepe|owner|registration|reg\. no|vat)\.?\s*(?:no\.?\s*)?[:：]",
                ),
            ),
        ]
    )
    + ")"
)
# Phrases that mark boilerplate wherever they stand in a short paragraph.
_MARKERS = re.compile(
    "(?:"
    + "|".join(
        f"(?P<{reason}>{pattern})"
        for reason, pattern in [
            (
                "comment_form",
                _phrases(
                    r"your email address will not be published", r"required fields are marked",
                    r"votre adresse (?:e-mail|email|de messagerie|courriel) ne sera pas publiée",
                    r"e-mail-adresse wird nicht veröffentlicht", r"correo electrónico no será publicad[oa]",
                    r"endereço de e-?mail não será publicado", r"indirizzo email non sarà pubblicato",
                    r"barua pepe yako haitachapishwa",
                ),
            ),
            (
                "copyright",
                _phrases(
                    r"all rights reserved", r"tous droits réservés", r"alle rechte vorbehalten", r"todos los derechos reservados",
                    r"todos os direitos reservados", r"tutti i diritti riservati", r"alle rechten voorbehouden",
                    r"haki zote zimehifadhiwa", r"ha(?:ƙ|k)(?:ƙ|k)in mallaka", r"መብቱ በ(?:ሕ|ህ)ግ የተጠበቀ",
                    r"may not be (?:published|reproduced), broadcast",
                ),
            ),
            (
                "attribution",
                _phrases(
                    r"originally (?:appeared|published|ran) (?:on|in|at|by)", r"(?:first|originally) published (?:on|in|at|by)",
                    r"republished (?:with permission|from)", r"(?:initialement|originellement|d[’']abord) publié", r"erschien (?:zuerst|ursprünglich)",
                    r"publicado originalmente", r"originalmente publicado", r"ilichapishwa kwa mara ya kwanza",
                ),
            ),
            (
                "subscribe",
                r"newsletter.{0,80}(?:sign up|subscribe|inbox|abonn|anmeld|inscri|suscr|assin|iscriv|jiandikishe)"
                r"|(?:sign up|subscribe|abonn|anmeld|inscri|suscr|assin|iscriv|jiandikishe).{0,80}newsletter",
            ),
            ("byline", r"^\((?:additional )?(?:reporting|writing|editing) by .{1,200}\)$"),
        ]
    )
    + ")"
)
# Every marker above holds one of these; finding them first spares searching each paragraph for every marker.
# Each is one more pass over the text: a phrase shared by several markers stands for all of them.
_MARKER_TRIGGERS = (
    "published", "required fields", "publié", "nicht veröffentlicht", "será publicad", "non sarà pubblicat", "haitachapishwa",
    "reserv", "réservés", "riservati", "vorbehalten", "voorbehouden", "zimehifadhiwa", "mallaka", "የተጠበቀ", "broadcast",
    "original", "erschien", "mara ya kwanza", "newsletter",
)
_COOKIE_CONSENT = re.compile(
    r"cookie.{0,200}(?:use|using|accept|consent|policy|settings|preferences|browsing|experience|utilis|akzept|verwend|einstellung"
    r"|datenschutz|acept|utiliz|aceit|accett|tumia)|(?:use|using|accept|utilis|verwend|utiliz).{0,80}cookie"
)
# A consent notice speaks to the reader; a news story about cookies does not.
_TO_THE_READER = re.compile(
    r"\b(?:we|our|you|your|this (?:site|website)|nous|notre|vous|votre|wir|unser\w*|sie|ihr\w*|usamos|utilizamos|nuestr[oa]s?"
    r"|usted|você|seu|sua|noi|tunatumia|yako)\b"
)
_SITE_DESCRIPTION = re.compile(r"(?:[\w-]+\.)+[a-z]{2,}\s+(?:is|est|ist|es|é|è|ni)\s+")
_SITE_WORDS = re.compile(
    r"\b(?:platform|website|web site|site|portal|outlet|plateforme|plattform|plataforma|portail|tovuti|we|our|nous|notre|wir|unser|nuestro)\b"
)
_NAVIGATION_SEPARATORS = ("|", "»", "›", ">", "/", "•", "·", "::")
_NAVIGATION_SEPARATOR = re.compile("[|»›>/•·]|::")
_SOCIAL = frozenset(
    "facebook twitter x instagram linkedin whatsapp telegram pinterest reddit tiktok youtube email e-mail mail print copy link "
    "messenger share tweet flipboard threads bluesky".split()
)
_DECORATION = " \t→←»«›‹>:|•·▪*…-–—.!▶►▸#"
_BULLETS = tuple("•·▪‣◦*-–—")
_BYLINE_PREFIX = re.compile(
    r"(?i:by|von|par|por|di|door|na|daga|written by|words by|reporting by|story by|text:|texte\s?:|author:|auteur\s?:"
    r"|autor(?:in)?:|mwandishi:|ዘጋቢ\s?:)\s+"
)
# After the names a byline may give a role or the site: "By Jane Doe, Paris correspondent".
_BYLINE_ROLE = re.compile(r"\s*(?:,|\||\s[–—-]\s)\s*")
# Two to four words of letters (hyphens, apostrophes, initials): a name alone on its line.
_NAME_LINE = re.compile(r"(?=.{3,40}$)[^\W\d_][\w’'-]*\.?(?: [^\W\d_][\w’'-]*\.?){1,3}")
_NAME_CONNECTORS = frozenset({"and", "und", "et", "y", "e", "na", "&", "de", "van", "von", "da", "di", "du", "del", "bin", "al"})
_LONGEST_BOILERPLATE = 1200  # characters; a site self-description can run this long
_LONGEST_CONSENT = 500
_LONGEST_LINE = 300


def _name_like(name: str, most_words: int) -> bool:
    words = name.replace(",", " ").split()
    named = [word for word in words if word.lower() not in _NAME_CONNECTORS]
    # Names start with a capital, or with a letter of a script without case (Ethiopic, Arabic).
    return 0 < len(named) <= most_words and all(
        word[0].isalpha() and not word[0].islower() and not any(c.isdigit() for c in word) for word in named
    )


def _is_navigation(paragraph: str) -> bool:
    if not _NAVIGATION_SEPARATOR.search(paragraph):
        return False
    for separator in _NAVIGATION_SEPARATORS:
        if paragraph.count(separator) >= 2:
            items = [item.strip() for item in paragraph.split(separator)]
            return all(
                0 < len(item) <= 30 and len(item.split()) <= 4 and any(c.isalpha() for c in item) and not item.endswith(".")
                for item in items
            )
    return False


def boilerplate_reason(paragraph: str) -> str | None:
    """Why `paragraph` is boilerplate by the generic patterns, or None."""
    return _reason(paragraph, paragraph.lower(), may_hold_marker=True)


def _reason(paragraph: str, lowered: str, may_hold_marker: bool) -> str | None:
    """`boilerplate_reason`, told whether a marker phrase can occur in the paragraph at all."""
    length = len(paragraph)
    if length > _LONGEST_BOILERPLATE:
        return None
    if _SITE_DESCRIPTION.match(lowered) and _SITE_WORDS.search(lowered):
        return "site_description"
    if length > _LONGEST_CONSENT:
        return None
    if "cookie" in lowered and _COOKIE_CONSENT.search(lowered) and _TO_THE_READER.search(lowered):
        return "cookie"
    if length > _LONGEST_LINE:
        return None
    core = lowered.strip(_DECORATION)
    chrome = _CHROME.match(core)
    if chrome:
        return chrome.lastgroup
    if may_hold_marker or lowered.startswith("("):
        marker = _MARKERS.search(lowered)
        if marker:
            return marker.lastgroup
    if length <= 100 and _byline_name(paragraph):
        return "byline"
    if length <= 200 and not paragraph.endswith(".") and _is_navigation(paragraph):
        return "navigation"
    if core and len(core) <= 100 and core.split(None, 1)[0].rstrip(",") in _SOCIAL:
        if all(word in _SOCIAL for word in core.replace(",", " ").split()):
            return "share"
    return None


def _lines_holding(text: str, line_starts: list[int], needles: Iterable[str]) -> set[int]:
    """Indices of the lines of `text` (starting at `line_starts`) that hold any of `needles`."""
    lines = set()
    for needle in needles:
        found = text.find(needle)
        while found != -1:
            lines.add(bisect.bisect_right(line_starts, found) - 1)
            found = text.find(needle, found + 1)
    return lines


def _continues_block(reason: str, paragraph: str) -> bool:
    """Whether `paragraph` is an item of the related-links or contact block above it."""
    if len(paragraph) > 200:
        return False
    if paragraph.startswith(_BULLETS):
        return True
    if reason == "related":  # a headline: no full stop at the end
        return len(paragraph.split()) <= 25 and not paragraph.endswith(".")
    return len(paragraph.split()) <= 3 or any(char.isdigit() for char in paragraph) or "@" in paragraph


def _byline_name(paragraph: str) -> str | None:
    """The names in a "By Jane Doe, Paris correspondent" line, or None when it is no byline."""
    prefix = _BYLINE_PREFIX.match(paragraph)
    if not prefix:
        return None
    names = paragraph[prefix.end():]
    for role in _BYLINE_ROLE.finditer(names):
        head, tail = names[: role.start()], names[role.end():]
        if _name_like(head, 6) and len(tail) <= 40 and not tail.endswith((".", "!", "?")):
            if not (role.group().strip() == "," and _name_like(tail, 6)):  # "Jane Doe, John Smith" is two names
                names = head
                break
    return names if _name_like(names, 6) else None


def remove_boilerplate(paragraphs: list[str]) -> tuple[list[str], dict[str, int], str | None]:
    """(kept paragraphs, removed paragraphs per reason, byline) by the generic patterns.

    A related-links or contact heading takes the list items below it along.
    A name alone as the last paragraph of an article is its byline.
    """
    kept: list[str] = []
    removed: collections.Counter[str] = collections.Counter()
    byline = None
    block = None
    lowered = "\n".join(paragraphs).lower().split("\n")
    # Searching the paragraphs short enough to hold a marker together once for the
    # marker phrases is much faster than searching each paragraph for each phrase.
    short = [index for index, paragraph in enumerate(paragraphs) if len(paragraph) <= _LONGEST_LINE]
    short_text = "\n".join(lowered[index] for index in short)
    line_starts = list(itertools.accumulate((len(lowered[index]) + 1 for index in short[:-1]), initial=0))
    marked = {short[line] for line in _lines_holding(short_text, line_starts, _MARKER_TRIGGERS)}
    for index, paragraph in enumerate(paragraphs):
        reason = _reason(paragraph, lowered[index], index in marked)
        if reason is None and block is not None and _continues_block(block, paragraph):
            reason = block
        block = reason if reason in ("related", "contact") else None
        if reason is None:
            kept.append(paragraph)
            continue
        removed[reason] += 1
        if reason == "byline" and byline is None:
            byline = _byline_name(paragraph)
    if len(kept) >= 3 and _NAME_LINE.fullmatch(kept[-1]) and _name_like(kept[-1], 4):
        name = kept.pop()
        byline = byline or name
        removed["byline"] += 1
    return kept, dict(removed), byline


# --- metadata ---------------------------------------------------------------

_TRACKING_PARAMETERS = {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid", "_ga"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name.startswith("utm_") or name in _TRACKING_PARAMETERS


def canonical_url(url: str | None) -> str | None:
    """Lower-case scheme and host, no fragment, no tracking parameters, no
    default port, sorted query, and a path that ends with "/" only at the root.

    None when `url` is not an absolute http(s) URL.
    """
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    query = urllib.parse.urlencode(
        sorted(
            (name, value)
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if not _is_tracking(name)
        )
    )
    return urllib.parse.urlunsplit((scheme, netloc, path, query, ""))


def registrable_domain(url: str | None) -> str | None:
    """The domain a publisher registered (`news.bbc.co.uk` -> `bbc.co.uk`), else the bare host."""
    return _registrable_domain(canonical_url(url))


def _registrable_domain(canonical: str | None) -> str | None:
    if canonical is None:
        return None
    domain = courlan.extract_domain(canonical)
    if domain:
        return domain.lower()
    host = urllib.parse.urlsplit(canonical).hostname or ""
    return host.removeprefix("www.") or None


_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def _squashed(name: str) -> str:
    return _NOT_ALPHANUMERIC.sub("", name.casefold())


def _names_site(segment: str, site_names: tuple[str, ...]) -> bool:
    segment = _squashed(segment)
    return bool(segment) and any(name and (name in segment or segment in name) for name in site_names)


_TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " :: ", " · ", " • ", " » ", " « ")


def clean_title(title: str | None, site_names: Iterable[str] = ()) -> str | None:
    """One readable line, without the site's name after (or before) a separator.

    A segment after " | " of a few words is always a site or section name; after
    a dash or other separator only when it names the site.
    """
    if not title:
        return None
    title = " ".join(clean_text(title))
    names = tuple(name for name in map(_squashed, site_names) if len(name) >= 3)
    for _ in range(2):
        for separator in _TITLE_SEPARATORS:
            if separator not in title:
                continue
            head, found, tail = title.rpartition(separator)
            if found and head and len(tail.split()) <= 5 and (separator == " | " or _names_site(tail, names)):
                title = head.strip()
                break
            first, found, rest = title.partition(separator)
            if found and rest and len(first.split()) <= 5 and _names_site(first, names):
                title = rest.strip()
                break
        else:
            break
    return title or None


def normalise_published_at(value: str | None) -> str | None:
    """`value` as UTC RFC 3339 with `Z`; None when absent or unreadable (see wirecopy.schemas.published_at)."""
    if not value:
        return None
    when = parse_published_at(value)
    return None if when is None else utc_timestamp(when)


# --- bad input and HTML -----------------------------------------------------

_SAMPLE = 4096
_BINARY_SHARE = 0.05
_FEWEST_BINARY_CHARACTERS = 16  # a stray control character or two is noise, not binary data
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x12\x15-\x17\x1a\x1b\x1e\x1f\x7f\ufffe\uffff]")


def check_not_binary(body: str) -> None:
    """Reject a body that is binary data rather than text."""
    sample = body[:_SAMPLE]
    if not _CONTROL.search(sample) and "\ufffd" not in sample:
        return
    junk = len(_CONTROL.findall(sample)) + sample.count("\ufffd")
    if junk > max(_BINARY_SHARE * len(sample), _FEWEST_BINARY_CHARACTERS):
        raise Rejected(DeadLetterReason.BINARY_CONTENT, f"{junk} of the first {len(sample)} characters are control or replacement characters")


@dataclasses.dataclass(frozen=True, slots=True)
class ExtractedPage:
    text: str
    title: str | None
    byline: str | None
    published_at: str | None
    site_name: str | None


_UNDECODABLE_SHARE = 0.01
_HTML_DATE = {"outputformat": "%Y-%m-%dT%H:%M:%S%z", "original_date": True, "extensive_search": False}


def extract_html(html: str, url: str | None = None) -> ExtractedPage:
    """The main content and metadata of an HTML page or fragment; raises `Rejected`."""
    replacement = html.count("\ufffd")
    if replacement > _UNDECODABLE_SHARE * len(html):
        raise Rejected(DeadLetterReason.UNDECODABLE_HTML, f"{replacement} replacement characters: the page was decoded with the wrong charset")
    check_not_binary(html)
    if "html" not in html[:50].lower():
        html = f"<html><body>{html}</body></html>"  # trafilatura parses whole documents only
    tree = trafilatura.load_html(html)
    if tree is None:
        raise Rejected(DeadLetterReason.UNDECODABLE_HTML, "the markup could not be parsed as HTML")
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, date_extraction_params=_HTML_DATE
    )
    if document is None or not (document.text or "").strip():
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "no main content found in the HTML")
    return ExtractedPage(document.text, document.title, document.author, document.date, document.sitename)


# --- the article before and after per-source learning -----------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Draft:
    """An article cleaned by the generic patterns, before per-source template removal."""

    article: Article
    paragraphs: tuple[str, ...]
    matching: tuple[str, ...]  # fingerprint of each paragraph
    fields: dict[str, Any]  # every normalised field but text, word_count and boilerplate_removed
    removed: dict[str, int]
    source_key: str | None  # the source domain whose template state this article reads and feeds
    repairs: frozenset[str] = frozenset()  # what repair_text changed in the title or body


def draft_article(article: Article) -> Draft:
    """Clean one raw article with the generic patterns; raises `Rejected`."""
    raw = article.raw
    url = raw.get("url")
    page = None
    plain = False  # extracted HTML takes the careful path
    if (raw.get("text") or "").strip():
        text, repairs = repair_text(raw["text"])
        plain = is_plain_text(text)
        if not plain:
            check_not_binary(text)
        paragraphs = clean_text(text, plain)
    elif (raw.get("html") or "").strip():
        page = extract_html(raw["html"], url)
        text, repairs = repair_text(page.text)
        paragraphs = clean_text(text)
    else:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "the record has neither text nor html")
    kept, removed, byline = remove_boilerplate(paragraphs)
    if not kept:
        left = (f"every paragraph was boilerplate ({', '.join(f'{kind} {count}' for kind, count in removed.items())})"
                if removed else "only white space and control or invisible characters")
        raise Rejected(DeadLetterReason.EMPTY_TEXT, f"no text left after cleaning: {left}")
    given_source = " ".join((raw.get("source") or "").split()) or None
    canonical = canonical_url(url)
    domain = _registrable_domain(canonical)
    site_names = [name for name in (given_source, domain and domain.split(".")[0], page and page.site_name) if name]
    page_byline = page and page.byline and " ".join(page.byline.split())
    title, title_repairs = repair_text(raw.get("title") or (page and page.title) or "")
    fields = {
        "article_id": raw["id"],
        "url": url,
        "canonical_url": canonical,
        "source": given_source or domain,
        "title": clean_title(title or None, site_names),
        "byline": page_byline or byline,
        "published_at": normalise_published_at(raw.get("published_at") or (page and page.published_at)),
        "published_at_raw": raw.get("published_at"),
    }
    source_key = domain or (given_source.casefold() if given_source else None)
    return Draft(article, tuple(kept), tuple(paragraph_fingerprints(kept, plain)), fields, removed, source_key,
                 frozenset(repairs + title_repairs))


def finish(draft: Draft, template: frozenset[int] = frozenset()) -> Article:
    """The normalised article without the paragraphs at indices `template`; raises `Rejected`."""
    keep = [index for index in range(len(draft.paragraphs)) if index not in template]
    if not keep:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "nothing but the source's template was left")
    removed = dict(draft.removed)
    if template:
        removed["source_template"] = len(template)
    matching_form = "\n".join(draft.matching[index] for index in keep if draft.matching[index])
    if not matching_form:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "no letter or digit left after cleaning")
    paragraphs = [draft.paragraphs[index] for index in keep]
    return draft.article.with_fields(
        fingerprint=matching_form,
        **draft.fields,
        text="\n\n".join(paragraphs),
        word_count=clean_word_count(paragraphs),
        boilerplate_removed=removed,
    )


# --- per-source template learning -------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SeenArticle:
    """What a source's state remembers of one article: its id and paragraph hashes and lengths."""

    article: int
    paragraphs: tuple[int, ...]
    lengths: tuple[int, ...]
    paragraph_set: frozenset[int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "paragraph_set", frozenset(self.paragraphs))


_DIGITS = re.compile(r"\d\d*")  # not `\d+`: see _NON_WORD_BMP
# `\d` looks up each character's category; the digits of the BMP as a class are one table lookup (2x faster).
_BMP_DIGIT_CLASS = _character_class(("Nd",), range(0x10000))
_BMP_DIGITS = re.compile(_BMP_DIGIT_CLASS + _BMP_DIGIT_CLASS + "*")
# The state's format: the first byte of what `encode_history` writes. A new
# layout gets a new number and `decode_history` keeps reading the old ones, so
# a job restored from a savepoint taken before an upgrade reads its state.
HISTORY_FORMAT = 1
MAX_HISTORY_BYTES = 1 + 2 + RECENT_ARTICLES * (8 + 2 + TRACKED_PARAGRAPHS * (8 + 2))


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _hashes64(texts: Iterable[str]) -> tuple[int, ...]:
    """`_hash64` of each of `texts`; the digests are read as integers in one step."""
    digests = b"".join(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest() for text in texts)
    return tuple(_little_endian(_array("Q", digests)))


def _tracked(count: int) -> list[int]:
    half = TRACKED_PARAGRAPHS // 2
    return list(range(count)) if count <= TRACKED_PARAGRAPHS else [*range(half), *range(count - half, count)]


def seen_article(draft: Draft) -> tuple[SeenArticle, list[int]]:
    """The draft as the state remembers it, and the paragraph index of each remembered hash.

    Paragraphs are compared by their fingerprint with digits masked, so a
    template line with a date or a counter still recurs.
    """
    indices = _tracked(len(draft.paragraphs))
    forms = "\n".join(draft.matching[index] for index in indices)
    masked = (_BMP_DIGITS if _within_bmp(forms) else _DIGITS).sub("0", forms).split("\n")
    hashes = _hashes64(form or draft.paragraphs[index] for form, index in zip(masked, indices))
    lengths = tuple(min(len(draft.paragraphs[index]), 0xFFFF) for index in indices)
    return SeenArticle(_hash64(draft.article.article_id), hashes, lengths), indices


def _array(typecode: str, values: Iterable[int] = ()) -> array.array:
    return array.array(typecode, values)


def _little_endian(values: array.array) -> array.array:
    if sys.byteorder == "big":
        values.byteswap()
    return values


def encode_history(history: list[SeenArticle]) -> bytes:
    """The state bytes: format, article count, ids, paragraph counts, paragraph hashes, paragraph lengths."""
    parts = [
        _array("Q", (seen.article for seen in history)),
        _array("H", (len(seen.paragraphs) for seen in history)),
        _array("Q", itertools.chain.from_iterable(seen.paragraphs for seen in history)),
        _array("H", itertools.chain.from_iterable(seen.lengths for seen in history)),
    ]
    return struct.pack("<BH", HISTORY_FORMAT, len(history)) + b"".join(_little_endian(part).tobytes() for part in parts)


def decode_history(data: bytes | None) -> list[SeenArticle]:
    """What `encode_history` wrote; refuses a format it does not know (state from a newer wirecopy)."""
    if not data:
        return []
    format_, count = struct.unpack_from("<BH", data)
    if format_ != HISTORY_FORMAT:
        raise ValueError(f"normaliser history in format {format_}; this wirecopy reads format {HISTORY_FORMAT}")
    offset = 3

    def take(typecode: str, items: int) -> array.array:
        nonlocal offset
        values = _array(typecode)
        values.frombytes(data[offset : offset + items * values.itemsize])
        offset += items * values.itemsize
        return _little_endian(values)

    articles = take("Q", count)
    sizes = take("H", count)
    hashes = take("Q", sum(sizes))
    lengths = take("H", len(hashes))
    history = []
    start = 0
    for article, size in zip(articles, sizes):
        history.append(SeenArticle(article, tuple(hashes[start : start + size]), tuple(lengths[start : start + size])))
        start += size
    return history


class HistoryCoder(beam.coders.Coder):
    """State coder for a source's history.

    When the runner hands out state cache tokens (the portable runners do), the
    SDK's state cache keeps the decoded list between elements and bundles:
    bytes are decoded only on a cache miss and encoded once per bundle.
    """

    def encode(self, history: list[SeenArticle]) -> bytes:
        return encode_history(history)

    def decode(self, data: bytes) -> list[SeenArticle]:
        return decode_history(data)

    def is_deterministic(self) -> bool:
        return True


def remember(history: list[SeenArticle], seen: SeenArticle) -> list[SeenArticle]:
    """The history with `seen` as the latest article (a redelivered article replaces its earlier self)."""
    return [*(other for other in history if other.article != seen.article), seen][-RECENT_ARTICLES:]


def template_paragraphs(history: list[SeenArticle], seen: SeenArticle) -> set[int]:
    """Positions in `seen.paragraphs` of the paragraphs that are the source's template.

    A paragraph is template when it recurs in `needed` distinct articles: this
    one and earlier ones that are copies neither of it nor of each other.
    Copies are told apart by their own paragraphs, those not widely shared (in
    two or more earlier articles): distinct articles share almost none of
    those, copies share most of them, by characters. An article with no own
    paragraph is a copy of any other.

    Two earlier articles cannot share an own paragraph (it would be in two of
    them), so of two earlier articles with own paragraphs neither is a copy of
    the other: an earlier article counts as distinct exactly when it is no
    copy of this one, and no pair of earlier articles needs comparing.
    """
    others = [other for other in history if other.article != seen.article]
    if not others:
        return set()
    needed = max(MIN_DISTINCT_ARTICLES, math.ceil(TEMPLATE_SHARE * (len(others) + 1)))
    frequency = collections.Counter(itertools.chain.from_iterable(other.paragraph_set for other in others))
    candidates = [position for position, paragraph in enumerate(seen.paragraphs) if frequency[paragraph] >= needed - 1]
    if not candidates:
        return set()

    def own_part(article: SeenArticle) -> dict[int, int]:
        return {p: n for p, n in zip(article.paragraphs, article.lengths) if frequency[p] < 2}

    own = own_part(seen)
    own_length = sum(own.values())
    if own_length == 0:  # this article is a copy of every earlier one
        return set()
    distinct: dict[int, bool] = {}

    def is_distinct(index: int) -> bool:
        """Whether `others[index]` is no copy of this article."""
        if index not in distinct:
            other = others[index]
            common = own.keys() & other.paragraph_set
            if not common:  # distinct unless it has no own paragraph (paragraph lengths are positive)
                distinct[index] = min(map(frequency.__getitem__, other.paragraph_set)) < 2
            else:
                smaller = min(own_length, sum(own_part(other).values()))
                distinct[index] = sum(own[p] for p in common) < COPY_OVERLAP * smaller
        return distinct[index]

    candidate_paragraphs = {seen.paragraphs[position] for position in candidates}
    distinct_carriers: collections.Counter[int] = collections.Counter()
    for index, other in enumerate(others):
        carried = candidate_paragraphs & other.paragraph_set
        if carried and is_distinct(index):
            distinct_carriers.update(carried)
    return {position for position in candidates if distinct_carriers[seen.paragraphs[position]] >= needed - 1}


# --- the stage --------------------------------------------------------------


def _stage_key(element: Any) -> str:
    """The key an outcome travels under to the stateful step: its source domain, else its own record.

    Only source keys ever hold state; keying everything else by its record
    spreads it over the workers instead of piling it on one key.
    """
    if isinstance(element, Draft) and element.source_key is not None:
        return f"source:{element.source_key}"
    record = element.article.source if isinstance(element, Draft) else getattr(element, "source", None)
    if isinstance(record, SourceRecord):
        return f"record:{record.topic}/{record.partition}/{record.offset}"
    return "record:"


class _DraftFn(beam.DoFn):
    """Articles become drafts cleaned by the generic patterns; other outcomes pass through."""

    def __init__(self):
        self._html = Metrics.counter("wirecopy", "normalise_html_articles")
        self._unparsable_dates = Metrics.counter("wirecopy", "normalise_published_at_unparsable")
        self._repaired = {repair: Metrics.counter("wirecopy", f"normalise_repaired_{repair}") for repair in ("html_entities", "mojibake")}
        self._warned = False

    def process(self, element: Outcome) -> Iterator[tuple[str, Any]]:
        if not isinstance(element, Article):
            yield _stage_key(element), element
            return
        for outcome in run_stage(STAGE, element, lambda article: [draft_article(article)]):
            if isinstance(outcome, Draft):
                if not (element.raw.get("text") or "").strip():
                    self._html.inc()
                if outcome.fields["published_at"] is None and element.raw.get("published_at"):
                    self._unparsable_dates.inc()
                    if not self._warned:  # one line per worker: the counter has the rest
                        self._warned = True
                        _LOG.warning("article %s: published_at %r is no time this pipeline reads; the article goes on "
                                     "without it (counter normalise_published_at_unparsable counts every such article)",
                                     outcome.article.article_id, element.raw["published_at"])
                for repair in outcome.repairs:
                    self._repaired[repair].inc()
            yield _stage_key(outcome), outcome


class _SourceTemplateFn(StatefulStageFn):
    """Finishes drafts, removing the paragraphs that recur across a source's articles; state keyed by source domain."""

    HISTORY = ReadModifyWriteStateSpec("recent_articles", HistoryCoder())

    def __init__(self):
        self._removed = Metrics.counter("wirecopy", "normalise_source_template_paragraphs")
        self._sources = Metrics.counter("wirecopy", "normalise_new_sources")

    def process(self, keyed: tuple[str, Any], history_state=beam.DoFn.StateParam(HISTORY)) -> Iterator[Outcome]:
        _, element = keyed
        if not isinstance(element, Draft):
            yield element
        elif element.source_key is None:  # neither URL nor source: no template to learn
            yield from run_stage(STAGE, element.article, lambda _: [finish(element)])
        else:
            yield from self._finish_learning(element, history_state)

    def _finish_learning(self, draft: Draft, history_state) -> list[Outcome]:
        history = history_state.read() or []
        learned: list[list[SeenArticle]] = []

        def work(_: Article) -> list[Outcome]:
            seen, indices = seen_article(draft)
            template = frozenset(indices[position] for position in template_paragraphs(history, seen))
            learned.append(remember(history, seen))
            self._removed.inc(len(template))
            return [finish(draft, template)]  # may reject an article that was all template; it is still remembered

        outcomes = run_stage(STAGE, draft.article, work)
        # State changes only after the last step that can fail (see wirecopy.transforms.stage).
        if learned:
            history_state.write(learned[0])
            if not history:
                self._sources.inc()
        return outcomes


class Normalise(beam.PTransform):
    """Outcomes in, outcomes out: articles normalised (or dead-lettered), everything else passed through."""

    def expand(self, outcomes):
        return (
            outcomes
            # The key type makes Beam pick a deterministic key coder, as stateful DoFns need.
            | "Draft" >> beam.ParDo(_DraftFn()).with_output_types(tuple[str, Any])
            | "SourceTemplate" >> beam.ParDo(_SourceTemplateFn())
        )
