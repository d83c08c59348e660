"""Per-source template learning: what a source's state remembers of its recent articles, its versioned coder,
and which paragraphs recur."""

from __future__ import annotations

import array
import collections
import dataclasses
import hashlib
import itertools
import math
import re
import struct
import sys
from typing import Iterable

import apache_beam as beam


from .draft import Draft
from .text import character_class, within_bmp


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
_BMP_DIGIT_CLASS = character_class(("Nd",), range(0x10000))
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
    masked = (_BMP_DIGITS if within_bmp(forms) else _DIGITS).sub("0", forms).split("\n")
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
