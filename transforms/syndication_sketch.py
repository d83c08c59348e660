"""Compact, comparable sketches of an article's text, their alignment, and index keys.

The text is cut into tokens: words (letters and digits; punctuation, case and
typography never count), and single characters of the scripts written
without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan). A shingle is a run of `SHINGLE_TOKENS`
consecutive tokens, across paragraph breaks, hashed to 64 bits with a seeded,
vectorised polynomial hash (numpy, no Python loop per word).

Independent reports of one event share names, numbers and quoted speech;
copies share narrative. So each shingle is *narrative* unless two of its
tokens are quoted speech, numbers, or capitalised words inside a sentence
(names), and only narrative shingles count fully as evidence of copying
(`QUOTE_WEIGHT` for the rest; `benchmarks/bench_stories.py` measures it).

From the hashes:

* the `Signature` keeps every distinct shingle whose 32-bit value falls below
  a threshold (a content-defined sample: a passage shared by two texts gives
  both the same sample values, whatever surrounds it), at least `MIN_SAMPLE`
  and at most `MAX_SAMPLE` values, each with the position of the token it
  starts at. It is complete below its `limit`, so two signatures compare
  exactly on the values below the smaller limit.
* `align` pairs the values two signatures share and keeps the longest chain
  in the same order in both texts (what text-reuse tools do with seeds and
  extension): a rewritten copy keeps many short runs in order, where an
  unrelated text shares a few scattered phrases. A chain value far from every
  other in either text is such a phrase and is dropped (`CHAIN_LINK`). It gives the weighted share
  of each text in the chain and how far the chain spreads over each text.
* `index_keys` are of two kinds. Winnowed keys over longer spans
  (`KEY_SPAN_SHINGLES` shingles apart): the minimum hash of every window of
  `KEY_WINDOW` spans, so any passage two texts share that is at least
  `KEY_WINDOW` spans long (~30 words) yields a common key however little
  else they share; and the `SAMPLE_KEYS` smallest narrative sample values, so
  a rewritten copy that keeps only short runs still shares keys with its source.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re

import numpy as np

SHINGLE_TOKENS = 3
# One shingle in SAMPLE_RATE is kept (on average), at least MIN_SAMPLE (short
# texts get a dense sample) and at most MAX_SAMPLE (long texts a thinner one).
# A short rewrite keeps few verbatim runs: with 48 values, one of 2-3 paragraphs matched its base on too few to
# chain. bench_stories seed 7, with the merge rules beside MERGE_REWRITE_SPREAD: MIN_SAMPLE 48 / 112: recall 0.949
# / 0.959 at precision 0.995 / 0.995; 128 (with MAX_SAMPLE 160) lost precision (0.987); SAMPLE_RATE 2: 0.974.
SAMPLE_RATE = 4
MIN_SAMPLE = 112
MAX_SAMPLE = 128
QUOTE_WEIGHT = 0.25
# Shares are weighed as chain / (sample + SHARE_PRIOR): two texts compare only on the values below the lower
# limit, so a short digest against a 1,400-word article compares on ~6 values, and 4 of them matched read as
# "two thirds contained" (it quoted one lead). The prior pulls such thin estimates down and barely moves a share
# measured on 50-128 values. bench_stories, prior 0 / 2 / 3 / 4, seed 7: P 0.980 / 0.987 / 0.990 / 0.990,
# R 0.965 / 0.959 / 0.954 / 0.953, ARI 0.973 / 0.973 / 0.972 / 0.971; seed 11: ARI 0.959 / 0.962 / 0.964 / 0.962.
SHARE_PRIOR = 3.0
KEY_SPAN_SHINGLES = SHINGLE_TOKENS
KEY_WINDOW = 24
MAX_WINNOWED_KEYS = 24
SAMPLE_KEYS = 12
DEFAULT_SEED = 1
# A chain value with no chain neighbour within CHAIN_LINK sample values in both texts is dropped: a common phrase
# met by chance far from the rest. A longest chain picked such phrases up across a whole digest (hau-017 against a
# digest quoting its lead: chain spread 0.91 of the digest, so "rewritten"; 0.18 without them). bench_stories,
# off / 5 / 8 / 12 / 16 / 24, seed 7: P 0.9899 / 0.9900 / 0.9909 / 0.9909 / 0.9909 / 0.9899, ARI 0.9750 / 0.9735
# / 0.9744 / 0.9752 / 0.9752 / 0.9750; seed 11: P 0.9857 / 0.9879 / 0.9907 / 0.9907 / 0.9907 / 0.9907,
# ARI 0.9678 / 0.9653 / 0.9690 / 0.9698 / 0.9702 / 0.9702.
CHAIN_LINK = 16
FRAME_BLOCK = 2

_U64 = np.uint64
_FULL_LIMIT = 1 << 32
_TOKEN_PRIME = _U64(0x100000001B3)
_TOKEN_INVERSE = _U64(pow(0x100000001B3, -1, 1 << 64))
_SPAN_PRIME = _U64(0xC2B2AE3D27D4EB4F)
_SPACE = 0x20
_POSITION_BITS = 15  # positions are stored as uint16 with the narrative flag in the low bit

# Quoted speech: the pairs newsrooms use. A bare apostrophe never opens a quote (it is mostly an elision).
_QUOTED = re.compile(
    r'"[^"\n]{1,800}"|“[^”\n]{1,800}”|«[^»\n]{1,800}»|„[^“”\n]{1,800}[“”]|‘[^’\n]{1,800}’(?!\w)'
    r"|「[^」\n]{1,800}」|『[^』\n]{1,800}』|‹[^›\n]{1,800}›"
)


class IncompatibleSignatures(ValueError):
    """Two signatures made with different seeds or shingle sizes cannot be compared."""


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    """The sampled shingle hashes of one text; immutable and picklable.

    `values` holds sorted, distinct 32-bit shingle values (little-endian
    uint32 bytes): every value of the text below `limit`, and no other.
    `positions` holds, per value, the token index of its first occurrence
    shifted left by one, with 1 in the low bit for a narrative shingle
    (little-endian uint16). `tokens` is the text's token count, `shingles`
    its number of distinct shingles; `content_hash` identifies the token
    sequence (typography and case aside, the exact text).
    """

    seed: int
    shingle_tokens: int
    values: bytes
    positions: bytes
    limit: int
    shingles: int
    tokens: int
    content_hash: bytes

    def sample(self) -> np.ndarray:
        return np.frombuffer(self.values, dtype="<u4")

    def packed_positions(self) -> np.ndarray:
        return np.frombuffer(self.positions, dtype="<u2")


@dataclasses.dataclass(frozen=True, slots=True)
class Alignment:
    """What two texts share, in order: weights count narrative shingles fully, others `QUOTE_WEIGHT`."""

    chain: int  # shared sample values in the longest same-order chain
    # Weighted share of a's sample (below the common limit) in the chain, taken as chain / (sample + SHARE_PRIOR):
    # what the decisions use. raw_share_a is chain / sample, what the events report.
    share_a: float
    share_b: float
    raw_share_a: float
    raw_share_b: float
    resemblance: float  # weighted chain / weighted union
    spread_a: float  # the chain's extent over a's tokens, 0-1
    spread_b: float
    shared_shingles: float  # estimated number of distinct shingles in the chain
    matched_a: tuple[int, ...]  # indices into a's sample of the chain's values
    # The chain's share of the sample within its extent, the sparser side's: ~1 for one passage both texts hold
    # verbatim, lower where the shared runs alternate with reworded text.
    density: float
    # The widest stretch of both texts between two consecutive chain values, the narrower side's, 0-1: ~0.5 when
    # all two texts share is a header and a footer around different bodies.
    gap: float


_NO_ALIGNMENT = Alignment(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (), 0.0, 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Sketch:
    """An article's signature, its index keys, and where each sampled shingle stands in its text."""

    signature: Signature
    keys: list[int]
    spans: tuple[tuple[int, int], ...]  # per sample value: [start, end) character offsets of its shingle


@dataclasses.dataclass(frozen=True, slots=True)
class Overlap:
    """What two samples share, in any order: the cheap test an index bucket runs on every pair sharing a key."""

    shared: int
    share_a: float
    share_b: float
    resemblance: float
    shared_shingles: float  # estimated number of distinct shingles in common


def _compatible(a: Signature, b: Signature) -> None:
    if a.seed != b.seed or a.shingle_tokens != b.shingle_tokens:
        raise IncompatibleSignatures(f"seed/shingle size {a.seed}/{a.shingle_tokens} vs {b.seed}/{b.shingle_tokens}")


def _below(signature: Signature, limit: int) -> np.ndarray:
    values = signature.sample()
    return values if signature.limit <= limit else values[: np.searchsorted(values, limit)]


def overlap(a: Signature, b: Signature) -> Overlap:
    _compatible(a, b)
    limit = min(a.limit, b.limit)
    values_a, values_b = _below(a, limit), _below(b, limit)
    if not len(values_a) or not len(values_b):
        return Overlap(0, 0.0, 0.0, 0.0, 0.0)
    shared = len(np.intersect1d(values_a, values_b, assume_unique=True))
    return Overlap(
        shared,
        shared / len(values_a),
        shared / len(values_b),
        shared / (len(values_a) + len(values_b) - shared),
        shared * _FULL_LIMIT / limit,
    )


def align(a: Signature, b: Signature) -> Alignment:
    """The longest chain of sample values a and b share in the same order, and what it covers of each."""
    _compatible(a, b)
    limit = min(a.limit, b.limit)
    values_a, values_b = _below(a, limit), _below(b, limit)
    count_a, count_b = len(values_a), len(values_b)
    if not count_a or not count_b:
        return _NO_ALIGNMENT
    _, index_a, index_b = np.intersect1d(values_a, values_b, assume_unique=True, return_indices=True)
    if not len(index_a):
        return _NO_ALIGNMENT
    packed_a, packed_b = a.packed_positions(), b.packed_positions()
    weights_a = np.where(packed_a[:count_a] & 1, 1.0, QUOTE_WEIGHT)
    weights_b = np.where(packed_b[:count_b] & 1, 1.0, QUOTE_WEIGHT)
    order = np.argsort(packed_a[index_a], kind="stable")
    index_a, index_b = index_a[order], index_b[order]
    in_b = packed_b[index_b] >> 1
    if len(in_b) < 2 or bool((in_b[1:] > in_b[:-1]).all()):  # copies: already in order
        chain_a, chain_b = index_a, index_b
    else:
        chain = _longest_increasing(in_b.tolist())
        chain_a, chain_b = index_a[chain], index_b[chain]
    chain_a, chain_b = _linked(chain_a, chain_b, packed_a[:count_a] >> 1, packed_b[:count_b] >> 1)
    if not len(chain_a):
        return _NO_ALIGNMENT
    # Each side weighs the chain by its own flags: typography (straight or curly
    # quotes) may make a phrase quoted in one copy and not in the other.
    weight_a, weight_b = float(weights_a[chain_a].sum()), float(weights_b[chain_b].sum())
    total_a, total_b = float(weights_a.sum()), float(weights_b.sum())
    positions_a, positions_b = packed_a[chain_a] >> 1, packed_b[chain_b] >> 1
    return Alignment(
        chain=len(chain_a),
        share_a=weight_a / (total_a + SHARE_PRIOR),
        share_b=weight_b / (total_b + SHARE_PRIOR),
        raw_share_a=weight_a / total_a,
        raw_share_b=weight_b / total_b,
        resemblance=(weight_a + weight_b) / (2 * (total_a + total_b) - weight_a - weight_b),
        spread_a=float(positions_a[-1] - positions_a[0] + 1) / max(a.tokens, 1),
        spread_b=float(positions_b.max() - positions_b.min() + 1) / max(b.tokens, 1),
        shared_shingles=len(chain_a) * _FULL_LIMIT / limit,
        matched_a=tuple(chain_a.tolist()),
        density=len(chain_a)
        / max(_within(packed_a[:count_a] >> 1, positions_a), _within(packed_b[:count_b] >> 1, positions_b)),
        gap=_widest_gap(positions_a / max(a.tokens, 1), positions_b / max(b.tokens, 1)),
    )


def _linked(
    chain_a: np.ndarray, chain_b: np.ndarray, positions_a: np.ndarray, positions_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The chain without its isolated values.

    Consecutive chain values are linked when at most CHAIN_LINK sample values of either text stand between them.
    A value linked to neither neighbour is a common phrase met by chance far from the rest (a longest chain picks
    them up across a long text), not copied text.
    """
    if len(chain_a) < 2:
        return chain_a[:0], chain_b[:0]
    link = (np.diff(_ranks(positions_a)[chain_a]) <= CHAIN_LINK) & (np.diff(_ranks(positions_b)[chain_b]) <= CHAIN_LINK)
    keep = np.concatenate(([False], link)) | np.concatenate((link, [False]))
    return chain_a[keep], chain_b[keep]


def _widest_gap(positions_a: np.ndarray, positions_b: np.ndarray) -> float:
    """The widest stretch of both texts (as fractions of each) between consecutive chain values with at least
    FRAME_BLOCK values on each side: the narrower side's."""
    gaps = np.minimum(np.diff(positions_a), np.diff(positions_b))[FRAME_BLOCK - 1 : len(positions_a) - FRAME_BLOCK]
    return float(gaps.max(initial=0.0))


def _ranks(positions: np.ndarray) -> np.ndarray:
    """Each sample value's rank in its text's order."""
    ranks = np.empty(len(positions), dtype=np.int64)
    ranks[np.argsort(positions, kind="stable")] = np.arange(len(positions))
    return ranks


def _within(positions: np.ndarray, chain_positions: np.ndarray) -> int:
    """How many sampled shingles lie within the extent of the chain's positions."""
    return int(((positions >= chain_positions.min()) & (positions <= chain_positions.max())).sum())


def _longest_increasing(sequence: list[int]) -> list[int]:
    """Indices of a longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []  # value at the end of the best chain of each length
    tail_index: list[int] = []
    previous = [-1] * len(sequence)
    for i, value in enumerate(sequence):
        length = bisect.bisect_left(tails, value)
        if length == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[length] = value
            tail_index[length] = i
        previous[i] = tail_index[length - 1] if length else -1
    chain, i = [], tail_index[-1] if tail_index else -1
    while i >= 0:
        chain.append(i)
        i = previous[i]
    return chain[::-1]


def sample_weight(signature: Signature, indices: int, limit: int | None = None, prior: float = SHARE_PRIOR) -> float:
    """The weighted share of `signature`'s sample below `limit` that the sample indices in bit mask `indices` make up
    (weighed as chosen / (sample + prior), see `SHARE_PRIOR`).

    A match can only hold values below both texts' limits, so its share is weighed among the article's values
    below the matched text's limit: over the whole sample, a short excerpt wholly inside a long article (whose
    thinner sample stops at a lower limit) would seem to share a third of its text with it.
    """
    packed = signature.packed_positions()
    if limit is not None and limit < signature.limit:
        packed = packed[: int(np.searchsorted(signature.sample(), limit))]
    weights = np.where(packed & 1, 1.0, QUOTE_WEIGHT)
    chosen = [i for i in range(len(packed)) if indices >> i & 1]
    return float(weights[chosen].sum() / (weights.sum() + prior)) if len(packed) else 0.0


# --- tokens and hashing -------------------------------------------------------


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


def _character_tables() -> tuple[np.ndarray, ...]:
    """Per BMP code point: word character (letter or digit), written without spaces between words, upper case,
    digit, sentence break, and its case folding.

    Built once at import (~50 ms): tokenising by table lookups in numpy is
    ~10x faster than a Unicode regex over the text.
    """
    characters = [chr(point) for point in range(0x10000)]
    word = np.fromiter((c.isalnum() for c in characters), dtype=bool, count=0x10000)
    upper = np.fromiter((c.isupper() for c in characters), dtype=bool, count=0x10000)
    digit = np.fromiter((c.isdigit() for c in characters), dtype=bool, count=0x10000)
    fold = np.fromiter(
        (ord(f) if len(f := c.casefold()) == 1 else ord(c) for c in characters), dtype=np.uint32, count=0x10000
    )
    word[0xD800:0xE000] = False  # surrogates
    unspaced = np.zeros(0x10000, dtype=bool)
    for first, last in _UNSPACED_RANGES:
        unspaced[first : last + 1] = True
    sentence_break = np.zeros(0x10000, dtype=bool)
    sentence_break[[ord(c) for c in '.!?:;\n"“”«»']] = True
    return word, unspaced & word, upper, digit, sentence_break, fold


# Han, kana, Thai, Lao, Tibetan, Myanmar, Khmer, Khmer symbols (all in the BMP; CJK extensions beyond it below).
_UNSPACED_RANGES = (
    (0x3040, 0x30FF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x0E00, 0x0EFF),
    (0x0F00, 0x0FFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x19E0, 0x19FF),
)
_ASTRAL_HAN = (0x20000, 0x2FA1F)
_WORD, _UNSPACED, _UPPER, _DIGIT, _BREAK, _FOLD = _character_tables()


@dataclasses.dataclass(frozen=True, slots=True)
class Tokens:
    folded: np.ndarray  # the text's code points, case-folded, 0 outside tokens
    starts: np.ndarray  # per token: character offsets in the text
    ends: np.ndarray
    narrative: np.ndarray  # bool per token: neither quoted, nor a number, nor a capitalised word inside a sentence


def tokenize(text: str) -> Tokens:
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    bmp = points < 0x10000
    low = np.where(bmp, points, 0)
    unspaced = _UNSPACED[low]
    word = _WORD[low]
    if not bmp.all():
        astral_han = ~bmp & (points >= _ASTRAL_HAN[0]) & (points <= _ASTRAL_HAN[1])
        unspaced, word = unspaced | astral_han, word & bmp | astral_han
    before = np.concatenate(([False], word[:-1]))
    after = np.concatenate((word[1:], [False]))
    unspaced_before = np.concatenate(([False], unspaced[:-1]))
    unspaced_after = np.concatenate((unspaced[1:], [False]))
    starts = np.flatnonzero(word & (~before | unspaced | unspaced_before))
    ends = np.flatnonzero(word & (~after | unspaced | unspaced_after)) + 1
    inside = np.zeros(len(starts), dtype=bool)
    quoted = np.array([m.span() for m in _QUOTED.finditer(text)], dtype=np.int64).reshape(-1, 2)
    if len(quoted):
        opened = np.searchsorted(quoted[:, 0], starts, side="right") - 1
        inside = (opened >= 0) & (starts < quoted[np.maximum(opened, 0), 1])
    breaks = np.flatnonzero(_BREAK[low])
    previous_ends = np.concatenate(([0], ends[:-1]))
    sentence_start = np.searchsorted(breaks, starts) > np.searchsorted(breaks, previous_ends)
    if len(starts):
        sentence_start[0] = True
    first = low[starts]
    narrative = ~inside & ~_DIGIT[first] & (sentence_start | ~_UPPER[first])
    folded = np.where(word, np.where(bmp, _FOLD[low], points), 0).astype(np.uint32)
    return Tokens(folded, starts, ends, narrative)


def _shingle_hashes(tokens: Tokens, seed: int) -> tuple[np.ndarray, bytes]:
    """Seeded, position-independent 64-bit hashes of every run of SHINGLE_TOKENS tokens (one run if fewer),
    and the token sequence's content hash.

    A polynomial over the tokens' folded code points laid end to end with one
    zero between tokens (so punctuation and spacing never count): a run's hash
    is the difference of the prefix sums at its ends, scaled back by the power
    at its start, so it hashes the same wherever it stands.
    """
    in_word = tokens.folded != 0
    starting = np.zeros(len(in_word), dtype=bool)
    starting[tokens.starts] = True
    token_number = np.cumsum(starting) - 1
    compact = (np.cumsum(in_word) - 1 + token_number)[in_word]  # each token after the first is preceded by one zero
    length = int(compact[-1]) + 1
    sequence = np.zeros(length, dtype=_U64)
    sequence[compact] = tokens.folded[in_word].astype(_U64) + _U64(1)
    powers = _powers(_TOKEN_PRIME, length)
    inverse = _powers(_TOKEN_INVERSE, length)
    prefix = np.concatenate(([_U64(0)], np.cumsum(sequence * powers, dtype=_U64)))
    position = np.zeros(len(in_word), dtype=np.int64)
    position[in_word] = compact
    starts, ends = position[tokens.starts], position[tokens.ends - 1] + 1
    if len(starts) > SHINGLE_TOKENS:
        starts, ends = starts[: len(starts) - SHINGLE_TOKENS + 1], ends[SHINGLE_TOKENS - 1 :]
    else:
        starts, ends = starts[:1], ends[-1:]
    salt = _mix(np.array([seed], dtype=_U64))[0]
    hashes = _mix(((prefix[ends] - prefix[starts]) * inverse[starts]) ^ salt)
    return hashes, hashlib.blake2b(sequence.tobytes(), digest_size=8).digest()


def sketch(text: str, seed: int = DEFAULT_SEED) -> Sketch | None:
    """The sketch of a text; None when it has no word."""
    tokens = tokenize(text)
    token_count = len(tokens.starts)
    if not token_count:
        return None
    hashes, content_hash = _shingle_hashes(tokens, seed)
    if token_count >= SHINGLE_TOKENS:
        window = np.lib.stride_tricks.sliding_window_view(tokens.narrative, SHINGLE_TOKENS)
        narrative = window.sum(axis=1) >= SHINGLE_TOKENS - 1
    else:
        narrative = np.array([tokens.narrative.sum() >= token_count - 1])
    values, first = np.unique((hashes >> _U64(32)).astype("<u4"), return_index=True)
    threshold = _FULL_LIMIT // SAMPLE_RATE
    below = int(np.searchsorted(values, threshold))
    keep = min(max(below, MIN_SAMPLE), MAX_SAMPLE)
    if keep >= len(values):
        kept, limit = values, _FULL_LIMIT
    else:
        kept, limit = values[:keep], int(values[keep])
    at = first[: len(kept)]
    positions = (np.minimum(at, (1 << _POSITION_BITS) - 1).astype("<u2") << 1) | narrative[at].astype("<u2")
    signature = Signature(
        seed, SHINGLE_TOKENS, kept.tobytes(), positions.tobytes(), limit, len(values), token_count, content_hash
    )
    last_token = np.minimum(at + SHINGLE_TOKENS - 1, token_count - 1)
    spans = tuple(zip(tokens.starts[at].tolist(), tokens.ends[last_token].tolist()))
    sample_keys = kept[narrative[at]][:SAMPLE_KEYS].tolist()
    return Sketch(signature, _winnowed_keys(hashes) + sample_keys, spans)


def _winnowed_keys(hashes: np.ndarray) -> list[int]:
    """Winnowed 64-bit keys of spans of two shingles `KEY_SPAN_SHINGLES` apart (at most MAX_WINNOWED_KEYS)."""
    if len(hashes) > KEY_SPAN_SHINGLES:
        spans = _mix(hashes[:-KEY_SPAN_SHINGLES] * _SPAN_PRIME + hashes[KEY_SPAN_SHINGLES:])
    else:
        spans = _mix(hashes[-1:] * _SPAN_PRIME)
    keys = _distinct_sorted(_sliding_minimum(spans, KEY_WINDOW))
    return keys[:MAX_WINNOWED_KEYS].tolist()


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
        values = np.minimum(values[: len(values) - (width - span)], values[width - span :])
    return values
