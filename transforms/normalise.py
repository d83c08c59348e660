"""Normalise stage: clean text, metadata and the matching fingerprint.

`text` stays readable: Unicode NFC, typography kept, control characters,
soft hyphens, zero-width characters and non-breaking spaces cleaned,
paragraphs separated by exactly one blank line. `fingerprint(text)` is the
separate matching form the syndication stage consumes.

An unparsable `published_at` is not worth losing an article over: it becomes
None and the `normalise_published_at_unparsable` counter counts it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import sys
import unicodedata
import urllib.parse
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas.codec import utc_timestamp
from schemas.records import Article, DeadLetterReason, Rejected
from transforms.stage import apply_stage, reject

STAGE = "Normalise"

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
    for char in "\u00a0\u2007\u202f\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2008\u2009\u200a\u205f\u3000":
        mapping[char] = " "
    mapping["\u2028"] = "\n"
    mapping["\u2029"] = "\n\n"
    return mapping


_CLEANUP = _cleanup_map()
_CLEANUP_CHARS = re.compile("[" + "".join(re.escape(char) for char in _CLEANUP) + "]")
_SPACES = re.compile(r"[ ]{2,}")
# Wire feeds end each line with a `<` marker.
_WIRE_LINE_END = re.compile(r"\s*<+\s*$")
_SENTENCE_END = tuple(".!?:;…。！？\"”»)]’'")


def clean_text(text: str) -> list[str]:
    """Readable paragraphs of `text`, each one line, in order.

    A blank line ends a paragraph. A single line break also starts one
    (feeds put one paragraph per line), except where it only wraps a
    sentence: the line does not end a sentence and the next starts lower-case.
    """
    text = text.replace("\r\n", "\n")
    if _CLEANUP_CHARS.search(text):
        text = _CLEANUP_CHARS.sub(lambda match: _CLEANUP[match.group()], text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    paragraphs: list[str] = []
    continuable = False
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line.strip())
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


def word_count(paragraphs: list[str]) -> int:
    """Whitespace-separated tokens that hold at least one letter or digit."""
    return sum(1 for paragraph in paragraphs for token in paragraph.split() if not _NO_WORD.fullmatch(token))


# --- fingerprint ------------------------------------------------------------


def _character_class(categories: tuple[str, ...]) -> str:
    """A regex class of every character whose Unicode category starts with one of `categories`."""
    ranges: list[tuple[int, int]] = []
    # Planes 3-13 hold nothing but letters or unassigned code points.
    for code in itertools.chain(range(0x30000), range(0xE0000, sys.maxunicode + 1)):
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


_NON_WORD_CLASS = _character_class(("P", "S", "Cc", "Co"))
_NON_WORD = re.compile(_NON_WORD_CLASS + "+")
_NO_WORD = re.compile(_NON_WORD_CLASS + "*")
# Format characters (zero-width joiners, soft hyphens) sit inside words.
_FORMAT = re.compile(_character_class(("Cf",)) + "+")
# Apostrophe look-alikes that Unicode files as letters (ʼ ʻ ʽ) rather than
# punctuation; unified so that they vanish with the other apostrophes.
_APOSTROPHE_LETTERS = str.maketrans({"\u02bc": "'", "\u02bb": "'", "\u02bd": "'"})
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


def fingerprint(text: str) -> str:
    """The matching form of `text` (the contract the syndication stage relies on).

    NFKC, case-folded; every punctuation, symbol and format character
    (quotes, apostrophes, dashes and ellipses included, so their variants all
    unify) becomes a space; letters, marks and digits of every script stay;
    whitespace collapses to single spaces inside a paragraph; paragraphs
    (separated by a blank line in `text`) are joined with "\\n", empty ones
    dropped.
    """
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if _FORMAT.search(text):
        text = _FORMAT.sub("", text)
    text = _NON_WORD.sub(" ", text.casefold().translate(_APOSTROPHE_LETTERS))
    paragraphs = (" ".join(paragraph.split()) for paragraph in _PARAGRAPH_BREAK.split(text))
    return "\n".join(paragraph for paragraph in paragraphs if paragraph)


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


def url_host(url: str | None) -> str | None:
    """The URL's host, lower-case, without a leading `www.`."""
    if not url:
        return None
    try:
        host = (urllib.parse.urlsplit(url.strip()).hostname or "").rstrip(".")
    except ValueError:
        return None
    return host.removeprefix("www.") or None


def article_source(raw: dict[str, Any]) -> str | None:
    """The publisher: the raw `source`, else the URL's host."""
    source = " ".join((raw.get("source") or "").split())
    return source or url_host(raw.get("url"))


def normalise_published_at(value: str | None) -> str | None:
    """`value` as UTC RFC 3339 with `Z`; None when absent or unparsable.

    A timestamp without an offset is taken as UTC.
    """
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return utc_timestamp(when)


def clean_title(title: str | None) -> str | None:
    if not title:
        return None
    paragraphs = clean_text(title)
    return " ".join(paragraphs) or None


# --- the stage --------------------------------------------------------------


def normalise_fields(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The enriched fields and fingerprint of a raw article; raises `Rejected`."""
    body = raw.get("text") or ""
    if not body.strip():
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "the record has no text")
    paragraphs = clean_text(body)
    if not paragraphs:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "no text left after cleaning")
    text = "\n\n".join(paragraphs)
    fields = {
        "article_id": raw["id"],
        "url": raw.get("url"),
        "canonical_url": canonical_url(raw.get("url")),
        "source": article_source(raw),
        "title": clean_title(raw.get("title")),
        "byline": None,
        "text": text,
        "word_count": word_count(paragraphs),
        "published_at": normalise_published_at(raw.get("published_at")),
        "boilerplate_removed": {},
    }
    return fields, fingerprint(text)


class _NormaliseFn(beam.DoFn):
    def __init__(self):
        self._normalised = Metrics.counter("wirecopy", "normalise_articles")
        self._unparsable_dates = Metrics.counter("wirecopy", "normalise_published_at_unparsable")

    def process(self, article: Article) -> Iterator[Any]:
        try:
            fields, matching_form = normalise_fields(article.raw)
        except Rejected as rejection:
            yield reject(STAGE, article, rejection)
            return
        if fields["published_at"] is None and article.raw.get("published_at"):
            self._unparsable_dates.inc()
        self._normalised.inc()
        yield article.with_fields(fingerprint=matching_form, **fields)


class Normalise(beam.PTransform):
    """Validated raw articles in; (normalised articles, dead letters) out."""

    def expand(self, articles):
        return apply_stage(articles, STAGE, _NormaliseFn())
