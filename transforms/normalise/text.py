"""Readable text and its matching form: repairs, cleanup, paragraphs, fingerprints, word counts."""

from __future__ import annotations

import html
import itertools
import re
import sys
import unicodedata
from typing import Iterable

import ftfy


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
    # ASCII is NFC, and isascii() is free.
    if not plain and not text.isascii() and not unicodedata.is_normalized("NFC", text):
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


# --- matching form (fingerprint) ---------------------------------------------


def character_class(categories: tuple[str, ...], codes: Iterable[int]) -> str:
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
_NON_WORD_BMP_CLASS = character_class(("P", "S", "Cc", "Co"), range(0x10000))
# Runs are written `[x][x]*`, not `[x]+`: `re` skips ahead to a pattern's first
# character only when the pattern starts with a plain class (1.5x faster here).
_NON_WORD_BMP = re.compile(_NON_WORD_BMP_CLASS + _NON_WORD_BMP_CLASS + "*")
# A run of non-word characters and the spaces after it (without a leading " ?",
# which would make every space a possible start: twice as slow).
_NON_WORD_SPAN = re.compile(_NON_WORD_BMP_CLASS + _NON_WORD_BMP_CLASS[:-1] + " ]*")
_NON_WORD_ASTRAL_CLASS = character_class(
    ("P", "S", "Co", "Cf"), itertools.chain(range(0x10000, 0x30000), range(0xE0000, sys.maxunicode + 1))
)
_NON_WORD_ASTRAL = re.compile(_NON_WORD_ASTRAL_CLASS + _NON_WORD_ASTRAL_CLASS + "*")
# A token without a letter, mark or digit ("–", "*", "…") in text whose only whitespace is single spaces.
_NON_WORD_TOKEN = re.compile(" " + _NON_WORD_BMP_CLASS + "+(?= )")
# Format characters (zero-width joiners, soft hyphens) sit inside words.
_FORMAT_CLASS = character_class(("Cf",), range(0x10000))
_FORMAT = re.compile(_FORMAT_CLASS + _FORMAT_CLASS + "*")
# Apostrophe look-alikes that Unicode files as letters (ʼ ʻ ʽ) rather than
# punctuation; unified so that they vanish with the other apostrophes.
_APOSTROPHE_LETTERS = re.compile("[\u02bb\u02bc\u02bd]")
# One scan tells whether any of the rarely needed passes applies.
_RARE = re.compile("(?:" + _FORMAT_CLASS + "|[\u02bb\u02bc\u02bd]|[\U00010000-\U0010ffff])")
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


def within_bmp(text: str) -> bool:
    # A character beyond the BMP takes two UTF-16 code units: encoding finds one far faster than a regex.
    return len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text)


def is_plain_text(text: str) -> bool:
    """Whether `text` needs none of the care above: it is NFKC and holds none of those characters nor any beyond
    the BMP.

    One scan tells cleanup, the binary check and the fingerprint that they have nothing to do.
    """
    return (
        _NEEDS_CARE.search(text) is None
        and within_bmp(text)
        and (text.isascii() or unicodedata.is_normalized("NFKC", text))
    )


def word_count(text: str) -> int:
    """Whitespace-separated tokens that hold at least one letter, mark or digit."""
    tokens = text.split()
    return len(tokens) - len(_NON_WORD_TOKEN.findall(" " + " ".join(tokens) + " "))


def clean_word_count(paragraphs: list[str]) -> int:
    """`word_count` of paragraphs of `clean_text`, at least one: their single spaces count the tokens without
    splitting."""
    spaced = " ".join(paragraphs)
    return spaced.count(" ") + 1 - len(_NON_WORD_TOKEN.findall(f" {spaced} "))
