"""Compact, comparable sketches of an article's fingerprint, and its index keys.

A fingerprint (see `wirecopy.transforms.normalise.fingerprint`) is cut into shingles:
runs of `SHINGLE_TOKENS` consecutive words, across paragraph breaks (so
merging or splitting paragraphs changes nothing but the shingles at the
break). Scripts written without spaces between words are shingled by
characters instead: `CJK_CHARACTERS` Han or kana characters, or
`SOUTHEAST_ASIAN_CHARACTERS` Thai, Lao, Khmer, Myanmar or Tibetan letters
(longer, since those are alphabets and a few letters make no word).

Every shingle is hashed to 64 bits with a seeded, vectorised polynomial hash
(numpy, no Python loop per word). From the hashes:

* the `Signature` keeps every distinct shingle whose 32-bit value falls below
  a threshold (a content-defined sample: a passage shared by two texts gives
  both the same sample values, whatever surrounds it), at least
  `MIN_SAMPLE` and at most `MAX_SAMPLE` values. It is complete below its
  `limit`, so two signatures compare exactly on the values below the smaller
  limit: containment of the shorter text in the longer, and Jaccard
  resemblance, both estimated without bias.
* `index_keys` are winnowed over longer spans (`KEY_SPAN_SHINGLES` shingles
  apart, ~2x the words): the minimum hash of every window of `KEY_WINDOW`
  spans. Any passage two texts share that is at least `KEY_WINDOW` spans long
  yields at least one common key, however little else they share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np

SHINGLE_TOKENS = 3
CJK_CHARACTERS = 5
SOUTHEAST_ASIAN_CHARACTERS = 10
# One shingle in SAMPLE_RATE is kept (on average), at least MIN_SAMPLE (short
# texts get a dense sample) and at most MAX_SAMPLE (long texts a thinner one).
SAMPLE_RATE = 6
MIN_SAMPLE = 32
MAX_SAMPLE = 96
KEY_SPAN_SHINGLES = SHINGLE_TOKENS
KEY_WINDOW = 24
MAX_KEYS = 32
DEFAULT_SEED = 1

_U64 = np.uint64
_FULL_LIMIT = 1 << 32
_TOKEN_PRIME = _U64(0x100000001B3)
_TOKEN_INVERSE = _U64(pow(0x100000001B3, -1, 1 << 64))
_SHINGLE_PRIME = _U64(0x9E3779B97F4A7C15)
_SPAN_PRIME = _U64(0xC2B2AE3D27D4EB4F)
_SPACE, _NEWLINE = 0x20, 0x0A

_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_SOUTHEAST_ASIAN = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff"
_UNSPACED = re.compile(f"[{_CJK}{_SOUTHEAST_ASIAN}]")
_CJK_RANGES = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
               (0x20000, 0x2FA1F))
_SOUTHEAST_ASIAN_RANGES = ((0x0E00, 0x0EFF), (0x0F00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x19E0, 0x19FF))


class IncompatibleSignatures(ValueError):
    """Two signatures made with different seeds or shingle sizes cannot be compared."""


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    """The sampled shingle hashes of one fingerprint; immutable and picklable.

    `values` holds sorted, distinct 32-bit shingle values (little-endian
    uint32 bytes): every value of the text below `limit`, and no other.
    `shingles` is the text's number of distinct shingles; `content_hash`
    identifies the exact fingerprint.
    """

    seed: int
    shingle_tokens: int
    values: bytes
    limit: int
    shingles: int
    content_hash: bytes

    def sample(self) -> np.ndarray:
        return np.frombuffer(self.values, dtype="<u4")

    def nbytes(self) -> int:
        return len(self.values) + len(self.content_hash) + 3 * 8


@dataclasses.dataclass(frozen=True, slots=True)
class Similarity:
    shared: int  # sample values in common below the common limit
    containment: float  # of the text with fewer shingles in the other
    resemblance: float  # Jaccard
    shared_shingles: float  # estimated number of distinct shingles in common


def compare(a: Signature, b: Signature) -> Similarity:
    """Estimated containment and resemblance of two signatures' texts."""
    if a.seed != b.seed or a.shingle_tokens != b.shingle_tokens:
        raise IncompatibleSignatures(
            f"seed/shingle size {a.seed}/{a.shingle_tokens} vs {b.seed}/{b.shingle_tokens}")
    limit = min(a.limit, b.limit)
    values_a, values_b = a.sample(), b.sample()
    if a.limit > limit:
        values_a = values_a[: np.searchsorted(values_a, limit)]
    if b.limit > limit:
        values_b = values_b[: np.searchsorted(values_b, limit)]
    if not len(values_a) or not len(values_b):
        return Similarity(0, 0.0, 0.0, 0.0)
    shared = len(np.intersect1d(values_a, values_b, assume_unique=True))
    smaller = len(values_a) if a.shingles <= b.shingles else len(values_b)
    union = len(values_a) + len(values_b) - shared
    return Similarity(shared, shared / smaller, shared / union, shared * _FULL_LIMIT / limit)


# --- hashing ----------------------------------------------------------------


def _mix(values: np.ndarray) -> np.ndarray:
    """The murmur3 64-bit finaliser, vectorised: every input bit affects every output bit."""
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xC4CEB93FE53B9E1B)
    return values ^ (values >> _U64(33))


def _powers(base: np.uint64, count: int) -> np.ndarray:
    powers = np.full(count, base, dtype=_U64)
    powers[0] = 1
    return np.cumprod(powers, dtype=_U64)


def _word_shingles(text: str) -> np.ndarray:
    """Position-independent hashes of every run of SHINGLE_TOKENS words of `text` (one run if fewer).

    A polynomial over the UTF-8 bytes with separators (space, newline)
    counting as zero: the hash of a run is the difference of the prefix sums
    at its ends, scaled back by the power at its start. So a run hashes the
    same wherever it stands and whichever separators it spans.
    """
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    separator = (data == _SPACE) | (data == _NEWLINE)
    if separator.all():
        return np.empty(0, dtype=_U64)
    powers = _powers(_TOKEN_PRIME, len(data))
    inverse = _powers(_TOKEN_INVERSE, len(data))
    terms = (data.astype(_U64) + _U64(1)) * powers
    terms[separator] = 0
    prefix = np.concatenate(([_U64(0)], np.cumsum(terms, dtype=_U64)))
    edges = np.flatnonzero(np.diff(np.concatenate(([True], separator, [True])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) > SHINGLE_TOKENS:
        starts, ends = starts[: len(starts) - SHINGLE_TOKENS + 1], ends[SHINGLE_TOKENS - 1:]
    else:
        starts, ends = starts[:1], ends[-1:]
    return (prefix[ends] - prefix[starts]) * inverse[starts]


def _windows(hashes: np.ndarray, width: int, prime: np.uint64) -> np.ndarray:
    """Order-sensitive combined hashes of every run of `width` consecutive hashes (one run if fewer)."""
    if len(hashes) <= width:
        width = len(hashes)
    count = len(hashes) - width + 1
    combined = hashes[:count].copy()
    for offset in range(1, width):
        combined = combined * prime + hashes[offset: offset + count]
    return combined


def _character_shingles(text: str, ranges: tuple[tuple[int, int], ...], width: int) -> np.ndarray:
    """Hashes of every run of `width` characters of the given scripts (whole runs if shorter)."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    inside = np.zeros(len(points), dtype=bool)
    for low, high in ranges:
        inside |= (points >= low) & (points <= high)
    if not inside.any():
        return np.empty(0, dtype=_U64)
    characters = _mix(points.astype(_U64) + _U64(0x51ED27))
    if len(points) < width:
        return _windows(characters[inside], width, _SHINGLE_PRIME)
    combined = _windows(characters, width, _SHINGLE_PRIME)
    counts = np.concatenate(([0], np.cumsum(inside)))
    full = counts[width:] - counts[:-width] == width
    found = combined[full]
    if not len(found):  # only runs shorter than `width`: each run is one shingle
        return _windows(characters[inside], width, _SHINGLE_PRIME)
    return found


def shingle_hashes(fingerprint: str, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Seeded 64-bit hashes of the fingerprint's shingles, in text order (not deduplicated)."""
    salt = _mix(np.array([seed], dtype=_U64))[0]
    if _UNSPACED.search(fingerprint) is None:
        return _mix(_word_shingles(fingerprint) ^ salt)
    parts = [
        _word_shingles(_UNSPACED.sub(" ", fingerprint)),
        _character_shingles(fingerprint, _CJK_RANGES, CJK_CHARACTERS),
        _character_shingles(fingerprint, _SOUTHEAST_ASIAN_RANGES, SOUTHEAST_ASIAN_CHARACTERS),
    ]
    return _mix(np.concatenate(parts) ^ salt)


def content_hash(fingerprint: str) -> bytes:
    return hashlib.blake2b(fingerprint.encode("utf-8"), digest_size=8).digest()


def signature(fingerprint: str, hashes: np.ndarray, seed: int = DEFAULT_SEED) -> Signature:
    """The signature of a fingerprint from its `shingle_hashes`."""
    values = _distinct_sorted((hashes >> _U64(32)).astype("<u4"))
    threshold = _FULL_LIMIT // SAMPLE_RATE
    below = int(np.searchsorted(values, threshold))
    keep = min(max(below, MIN_SAMPLE), MAX_SAMPLE)
    if keep >= len(values):
        kept, limit = values, _FULL_LIMIT
    else:
        kept, limit = values[:keep], int(values[keep])
    return Signature(seed, SHINGLE_TOKENS, kept.tobytes(), limit, len(values), content_hash(fingerprint))


def index_keys(hashes: np.ndarray) -> list[int]:
    """Winnowed 64-bit keys of spans of two shingles `KEY_SPAN_SHINGLES` apart (at most MAX_KEYS)."""
    if not len(hashes):
        return []
    if len(hashes) > KEY_SPAN_SHINGLES:
        spans = _mix(hashes[:-KEY_SPAN_SHINGLES] * _SPAN_PRIME + hashes[KEY_SPAN_SHINGLES:])
    else:
        spans = _mix(hashes[-1:] * _SPAN_PRIME)
    keys = _distinct_sorted(_sliding_minimum(spans, KEY_WINDOW))
    return keys[:MAX_KEYS].tolist()


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    if len(values) < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _sliding_minimum(values: np.ndarray, width: int) -> np.ndarray:
    """The minimum of every window of `width` consecutive values (of all, if fewer), by doubling spans."""
    if len(values) <= width:
        return values.min(keepdims=True)
    span = 1
    while span * 2 <= width:
        values = np.minimum(values[:-span], values[span:])
        span *= 2
    if width > span:
        values = np.minimum(values[: len(values) - (width - span)], values[width - span:])
    return values


def sketch(fingerprint: str, seed: int = DEFAULT_SEED) -> tuple[Signature, list[int]]:
    """The signature and the index keys of a fingerprint."""
    hashes = shingle_hashes(fingerprint, seed)
    return signature(fingerprint, hashes, seed), index_keys(hashes)
