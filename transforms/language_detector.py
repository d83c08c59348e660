"""Language identification on langdetect's own profiles: exact, vectorised, calibrated.

langdetect estimates a naive-Bayes posterior over its 55 character 1-3-gram
profiles by random sampling (7 trials of up to 1000 draws), which is slow
and, unseeded, changes between runs. Here every n-gram of a bounded sample of
the text is looked up in one sorted key array and the log-probabilities are
summed in a single numpy gather: exact, deterministic and an order of
magnitude faster.

On top of the plain model:
- Scripts first. Letters are counted per script; a script that belongs to one
  language (Greek, Hangul, kana, Thai, Hebrew, Armenian, Georgian, the Indic
  scripts but Devanagari) decides on its own, and only the profiles written in
  the text's dominant script compete (so Latin names in a Russian article or
  kanji in a Japanese one cannot pull the answer elsewhere). Latin letters
  count half towards dominance: Latin boilerplate around text in another
  script is common, the reverse is not.
- Case is folded in the profiles and the text: langdetect's profiles are
  case-sensitive, which penalises lowercase German nouns, for example.
- Word boundaries: like langdetect, the text is padded with a space around
  each word, so " ab" (a word's start) and "ab " (its end) are n-grams of the
  profiles. They get their own weights (beginnings and endings of words
  weigh differently from their insides), which helps short texts most:
  cross-validated on the development data, word pairs gain 0.6 points and
  single words 0.8 over weights per n-gram order alone; sentences do not
  change.
- Calibration (`language_calibration`, fitted on development data by
  `benchmarks/language_fit.py`): per profile, a weight for each class of n-gram (unigrams;
  bigrams and trigrams at a word's start, at its end, inside it), the score of
  an n-gram the profile lacks, per class (profiles were pruned very
  differently, so absence means different things), and a bias. The softmax of
  the calibrated scores is a probability, not naive Bayes' near-certain 1.0.
- Words (`WordFrequencies`): for a short text (word pairs, single words,
  short sentences), where n-grams say little, each word's log-frequency in
  the `wordfreq` lists (Wikipedia, subtitles, news, ...: data independent of
  the development data) is added, with a weight fitted with the rest of the
  calibration. It separates close neighbours that share most n-grams (Danish
  and Norwegian, Czech and Slovak, Bulgarian and Macedonian, Spanish and
  Portuguese): cross-validated, word pairs go from 86.7 to 92.0 % right,
  single words from 70.8 to 76.7 %, sentences from 98.5 to 99.4 %. Only
  languages wordfreq covers are compared with each other, relative to the
  best of them, so a language it lacks (Afrikaans, Marathi, ...) is never
  pushed down for lacking a word list.
- Unknown languages: the share of the text's trigrams (of ordinary, not
  capitalised, words) missing from the winning profile is compared with what
  that language's own texts show; a text far off (Igbo scored as Vietnamese,
  say) loses its confidence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import pathlib
import pickle
import re
import sys
import unicodedata
from typing import Any, Iterator

import numpy as np

from wirecopy.schemas.records import LanguageTag
from wirecopy.transforms import language_calibration

_LOG = logging.getLogger(__name__)

DETECTOR_VERSION = "3"
UNDETERMINED = "und"
# Confidence below which the code is `und`. Confidence is calibrated (about
# the probability of being right), so 0.5 labels what is more likely right
# than wrong; benchmarks/bench_language.py prints the trade-off.
DEFAULT_THRESHOLD = 0.5
MAX_ALTERNATIVES = 3
# A long text is scored on this many characters, taken as evenly spaced
# windows so that a lead paragraph in another language cannot decide alone.
SAMPLE_CHARS = 1200
SAMPLE_WINDOWS = 4
# Fewer letters than this carry too little evidence in an alphabetic script;
# one syllable or ideograph is already a word.
MIN_LETTERS = 3
# A text is `ja` rather than `zh` when at least this share of its CJK letters is kana.
KANA_SHARE_FOR_JAPANESE = 0.1
# Goodness of fit: z-scores of the miss rates up to this are what a
# language's own texts show (the tails are heavier than a normal's, hence not
# 3; on the real articles 3 loses five of 3,168 known-language articles, 3.5
# two); beyond it confidence decays like a normal tail.
MISS_Z_ALLOWED = 3.5
# The Chinese profiles keep ~200 trigrams, so nearly every trigram of Chinese
# text is missing from them: the test says nothing there.
MAX_TESTABLE_MISS_RATE = 0.5

# Word evidence: the most frequent words of each language's wordfreq list
# (20,000 a language: in a cross-validated trial, word pairs gained 4.2 points
# with 5,000, 5.7 with 20,000 and 6.2 with 100,000, at 3.6 times the memory),
# and only for texts of at most this many (space-separated) words: longer
# ones have n-grams enough (real articles are 99.9 % right without), and they
# stay as fast as before.
LEXICON_WORDS = 20_000
LEXICON_MAX_TEXT_WORDS = 40
# A word not in a language's list scores this far (natural log) below the
# list's least frequent word: it may well be rarer still.
UNLISTED_WORD_DROP = 2.0
# langdetect profile -> wordfreq list, where the codes differ. Chinese,
# Japanese and Korean are left out: script decides them, and wordfreq needs
# extra tokenisers for them.
_WORDFREQ_LIST = {"no": "nb", "hr": "sh", "tl": "fil"}
_NO_WORD_LIST = frozenset({"zh-cn", "zh-tw", "ja", "ko"})
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")

# Letters are grouped into scripts by code-point range (other characters are
# not letters for this purpose).
_SCRIPT_RANGES = (
    ("latin", 0x0041, 0x02AF),  # with IPA Extensions: Hausa's ɓ and ɗ, for example
    ("latin", 0x1E00, 0x1EFF),
    ("greek", 0x0370, 0x03FF),
    ("greek", 0x1F00, 0x1FFF),
    ("cyrillic", 0x0400, 0x052F),
    ("armenian", 0x0530, 0x058F),
    ("hebrew", 0x0590, 0x05FF),
    ("arabic", 0x0600, 0x06FF),
    ("arabic", 0x0750, 0x077F),
    ("arabic", 0xFB50, 0xFDFF),
    ("arabic", 0xFE70, 0xFEFF),
    ("devanagari", 0x0900, 0x097F),
    ("bengali", 0x0980, 0x09FF),
    ("gurmukhi", 0x0A00, 0x0A7F),
    ("gujarati", 0x0A80, 0x0AFF),
    ("oriya", 0x0B00, 0x0B7F),
    ("tamil", 0x0B80, 0x0BFF),
    ("telugu", 0x0C00, 0x0C7F),
    ("kannada", 0x0C80, 0x0CFF),
    ("malayalam", 0x0D00, 0x0D7F),
    ("sinhala", 0x0D80, 0x0DFF),
    ("thai", 0x0E00, 0x0E7F),
    ("georgian", 0x10A0, 0x10FF),
    ("hangul", 0x1100, 0x11FF),
    ("hangul", 0x3130, 0x318F),
    ("hangul", 0xAC00, 0xD7AF),
    ("ethiopic", 0x1200, 0x139F),
    ("kana", 0x3040, 0x30FF),
    ("kana", 0x31F0, 0x31FF),
    ("han", 0x3400, 0x4DBF),
    ("han", 0x4E00, 0x9FFF),
    ("han", 0xF900, 0xFAFF),
)
_SCRIPTS = ("none",) + tuple(dict.fromkeys(name for name, _, _ in _SCRIPT_RANGES))
# Japanese mixes kanji and kana, so the two compete as one group.
_GROUP = {"han": "cjk", "kana": "cjk"}
_GROUP_SCRIPTS = {"cjk": ("han", "kana")}
# Scripts written by one language (in news, at least): the script decides.
SCRIPT_LANGUAGE = {
    "greek": "el",
    "armenian": "hy",
    "hebrew": "he",
    "bengali": "bn",
    "gurmukhi": "pa",
    "gujarati": "gu",
    "oriya": "or",
    "tamil": "ta",
    "telugu": "te",
    "kannada": "kn",
    "malayalam": "ml",
    "sinhala": "si",
    "thai": "th",
    "georgian": "ka",
    "hangul": "ko",
}
_SYLLABIC = frozenset({"cjk", "hangul"})
# When choosing the dominant script, Latin letters count half: web and news
# text in other scripts comes wrapped in Latin site names, brands and headers
# (an Urdu sentence after an English masthead and menu, say), while text in
# Latin script rarely carries long runs of another script.
LATIN_WEIGHT_FOR_DOMINANCE = 0.5

_URL_OR_EMAIL = re.compile(r"(?:https?://|www\.)\S+|[-_.0-9A-Za-z]+@[-_0-9A-Za-z]+\.[-_.0-9A-Za-z]+")
# A window that starts or ends inside a word drops that part word (unless
# the window is one unbroken run, as in Chinese or Japanese).
_LEADING_PART_WORD = re.compile(r"^\S*\s+")
_TRAILING_PART_WORD = re.compile(r"\s+\S*$")
_SPACE = ord(" ")
_BMP = 0x10000
# Every character is in the BMP by then, so an n-gram packs into 16 bits a
# character; bit 62 marks a trigram of an ordinary (lowercase) word.
_CODE_BITS = 16
_ORDINARY = np.int64(1) << 62
# The classes of n-gram that calibration weighs separately, with their order.
# A word-padding space comes first in a word's start (" ab", " a", and " a "
# for a one-letter word) and last in its end ("ab ", "a ").
GRAM_CLASSES = (
    ("unigram", 1),
    ("bigram at word start", 2),
    ("bigram at word end", 2),
    ("bigram inside word", 2),
    ("trigram at word start", 3),
    ("trigram at word end", 3),
    ("trigram inside word", 3),
)
GRAM_CLASS_ORDER = np.array([n for _, n in GRAM_CLASSES], dtype=np.int8)


def normalise_code(code: str | None) -> str | None:
    """ISO 639-1 from a langdetect profile name or a raw hint (`zh-cn` -> `zh`, `en_US` -> `en`)."""
    if not code:
        return None
    return code.strip().lower().replace("_", "-").split("-")[0] or None


@dataclasses.dataclass(frozen=True, slots=True)
class LanguageResult:
    code: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]
    hint: str | None
    detector: str

    @property
    def hint_disagrees(self) -> bool:
        """A hint was given and the evidence, strong enough for a label, says otherwise."""
        hinted = normalise_code(self.hint)
        return hinted is not None and self.code != UNDETERMINED and hinted != self.code

    def to_event(self) -> LanguageTag:
        """The `language` object of `enriched_article.v1.json`."""
        return {
            "code": self.code,
            "confidence": round(self.confidence, 4),
            "alternatives": [{"code": code, "probability": round(p, 4)} for code, p in self.alternatives],
            "hint": self.hint,
            "detector": self.detector,
        }


def representative_sample(text: str | None, title: str | None = None, max_chars: int = SAMPLE_CHARS) -> str:
    """The title and, of a long body, `SAMPLE_WINDOWS` evenly spaced windows
    (first and last at the ends) cut back to whole words, `max_chars` in all."""
    body = text or ""
    if len(body) > max_chars:
        window = (max_chars - (SAMPLE_WINDOWS - 1)) // SAMPLE_WINDOWS
        stride = (len(body) - window) / (SAMPLE_WINDOWS - 1)
        windows = []
        for i in range(SAMPLE_WINDOWS):
            start = round(i * stride)
            piece = body[start : start + window]
            if start > 0 and not body[start - 1].isspace():
                piece = _LEADING_PART_WORD.sub("", piece, count=1)
            if start + window < len(body) and not body[start + window].isspace():
                piece = _TRAILING_PART_WORD.sub("", piece, count=1)
            windows.append(piece)
        body = "\n".join(windows)
    return "\n\n".join(part for part in (title, body) if part)


def _key(gram: str) -> int:
    key = 0
    for ch in gram:
        key = (key << _CODE_BITS) | ord(ch)
    return key


def _gram_class(gram: str) -> int:
    if len(gram) == 1:
        return 0
    where = 0 if gram[0] == " " else 1 if gram[-1] == " " else 2
    return (1 if len(gram) == 2 else 4) + where


def _fold(gram: str) -> str:
    lower = gram.lower()
    return lower if len(lower) == len(gram) else gram


@dataclasses.dataclass(frozen=True)
class TextEvidence:
    """What one text offers the model."""

    script: str  # dominant script group
    letters: int  # all letters, any script
    script_letters: int  # letters in the dominant group
    competing_letters: int  # letters of other scripts that count against the dominant one
    kana_share: float
    candidates: np.ndarray  # profile columns written in the dominant script
    rows: np.ndarray  # vocabulary rows of the text's n-grams that some profile has
    counts: np.ndarray  # how often each occurs (a row may repeat, see `ordinary`)
    # For the goodness-of-fit test: trigrams of words that do not start with a
    # capital (names are international; ordinary words show the language).
    ordinary: np.ndarray  # per entry of `rows`: such a trigram
    ordinary_trigrams: int  # all of them, in a profile or not


class NgramTables:
    """langdetect's profiles as arrays: one row per n-gram any profile has, one column per profile.

    `log_prob[g, l]` is log P(g | l) for a case-folded n-gram the profile
    keeps and, for one it lacks, a floor one tenth of the profile's pruning
    cut-off for that order (the floor calibration starts from).
    `gram_class[g]` indexes `GRAM_CLASSES`.
    """

    def __init__(self, profiles_directory: pathlib.Path):
        profiles = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(profiles_directory.iterdir())]
        self.languages = tuple(profile["name"] for profile in profiles)
        folded = []
        for profile in profiles:
            counts: dict[str, int] = {}
            for gram, count in profile["freq"].items():
                if 1 <= len(gram) <= 3:
                    counts[_fold(gram)] = counts.get(_fold(gram), 0) + count
            folded.append(counts)

        vocabulary = sorted({gram for counts in folded for gram in counts}, key=_key)
        row = {gram: i for i, gram in enumerate(vocabulary)}
        self.keys = np.array([_key(gram) for gram in vocabulary], dtype=np.int64)
        self.order = np.array([len(gram) for gram in vocabulary], dtype=np.int8)
        self.gram_class = np.array([_gram_class(gram) for gram in vocabulary], dtype=np.int8)
        self.log_prob = np.empty((len(vocabulary), len(profiles)), dtype=np.float32)
        self.seen = np.zeros((len(vocabulary), len(profiles)), dtype=bool)
        self.log_floor = np.empty((len(profiles), 3))
        for column, (profile, counts) in enumerate(zip(profiles, folded)):
            totals = profile["n_words"]
            for n in (1, 2, 3):
                cut_off = min(c for g, c in counts.items() if len(g) == n) / totals[n - 1]
                self.log_floor[column, n - 1] = math.log(cut_off / 10)
            self.log_prob[:, column] = self.log_floor[column, self.order - 1]
            rows = np.array([row[gram] for gram in counts])
            self.log_prob[rows, column] = np.log([c / totals[len(g) - 1] for g, c in counts.items()])
            self.seen[rows, column] = True

        self._normalise = self._normalisation_table()
        code_points = [chr(cp) for cp in range(_BMP)]
        self._upper = np.array([ch.isupper() for ch in code_points])
        self._lower = np.array([ord(_fold(ch)) for ch in code_points], dtype=np.int64)
        self._script_of = np.zeros(_BMP, dtype=np.uint8)
        for name, start, end in _SCRIPT_RANGES:
            self._script_of[start : end + 1] = _SCRIPTS.index(name)
        self._script_of[~np.array([ch.isalpha() for ch in code_points])] = 0
        # Per script group: which script indices belong to it (a lookup table: np.isin sorted both sides per text).
        self._in_group = {}
        for group in {_GROUP.get(s, s) for s in _SCRIPTS[1:]}:
            self._in_group[group] = np.zeros(len(_SCRIPTS), dtype=bool)
            self._in_group[group][[_SCRIPTS.index(s) for s in _GROUP_SCRIPTS.get(group, (group,))]] = True
        self.profile_script = tuple(self._script_of_profile(counts) for counts in folded)
        self._candidates = {
            script: np.array([i for i, s in enumerate(self.profile_script) if s == script], dtype=np.intp)
            for script in {_GROUP.get(s, s) for s in _SCRIPTS[1:]}
        }

    @staticmethod
    def _normalisation_table() -> np.ndarray:
        """langdetect's per-character normalisation (digits and most punctuation to
        space, kana and Hangul to one symbol each, kanji to class representatives),
        precomputed for the BMP so that our n-grams are the profiles' n-grams."""
        from langdetect.utils.ngram import NGram

        return np.array([ord(NGram.normalize(chr(cp))) for cp in range(_BMP)], dtype=np.int64)

    def _script_of_profile(self, counts: dict[str, int]) -> str:
        mass = np.zeros(len(_SCRIPTS))
        for gram, count in counts.items():
            if len(gram) == 1 and ord(gram) < _BMP:
                mass[self._script_of[ord(gram)]] += count
        dominant = _SCRIPTS[int(np.argmax(mass[1:])) + 1]
        return _GROUP.get(dominant, dominant)

    def evidence(self, text: str) -> TextEvidence:
        text = _URL_OR_EMAIL.sub(" ", unicodedata.normalize("NFC", text))
        raw = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        raw = raw[raw < _BMP].astype(np.int64)
        scripts = self._script_of[raw]
        per_script = np.bincount(scripts, minlength=len(_SCRIPTS))
        per_script[0] = 0
        letters = int(per_script.sum())
        groups: dict[str, int] = {}
        for index in np.flatnonzero(per_script):
            group = _GROUP.get(_SCRIPTS[index], _SCRIPTS[index])
            groups[group] = groups.get(group, 0) + int(per_script[index])
        if not groups:
            nothing = np.zeros(0, dtype=np.intp)
            return TextEvidence("none", 0, 0, 0, 0.0, nothing, nothing, nothing, nothing.astype(bool), 0)
        # Ties go to the alphabetically first group, so the answer never depends on dict order.
        script = min(groups, key=lambda g: (-groups[g] * (LATIN_WEIGHT_FOR_DOMINANCE if g == "latin" else 1.0), g))
        # Latin names, brands and URLs turn up in every script's news; only
        # letters of a third script count against a non-Latin one.
        competing = letters - groups[script] - (groups.get("latin", 0) if script != "latin" else 0)
        kana = int(per_script[_SCRIPTS.index("kana")])
        kana_share = kana / groups[script] if script == "cjk" else 0.0
        candidates = self._candidates[script]

        in_script = self._in_group[script][scripts]
        # Keep the dominant script's letters and langdetect's punctuation
        # classes; letters of other scripts become word breaks.
        chars = np.where(in_script | (scripts == 0), self._normalise[raw], _SPACE)
        upper = self._upper[chars]
        keep = np.ones(len(chars), dtype=bool)
        keep[1:] = (chars[1:] != _SPACE) | (chars[:-1] != _SPACE)
        chars = np.concatenate(([_SPACE], self._lower[chars[keep]], [_SPACE]))
        upper = np.concatenate(([False], upper[keep], [False]))
        # Like langdetect, skip the n-grams ending in the second or later
        # capital of an all-caps run: acronyms carry no language evidence.
        valid = np.ones(len(chars), dtype=bool)
        valid[1:] = ~(upper[1:] & upper[:-1])

        unigrams = chars[(chars != _SPACE) & valid]
        end = np.arange(1, len(chars))
        bigrams = ((chars[end - 1] << _CODE_BITS) | chars[end])[valid[end]]
        end = np.arange(2, len(chars))
        trigram_ends = end[valid[end] & (chars[end - 1] != _SPACE)]
        trigrams = (
            (chars[trigram_ends - 2] << (2 * _CODE_BITS))
            | (chars[trigram_ends - 1] << _CODE_BITS)
            | chars[trigram_ends]
        )
        word_start = np.zeros(len(chars), dtype=bool)
        word_start[1:] = (chars[:-1] == _SPACE) & (chars[1:] != _SPACE)
        word = np.cumsum(word_start)
        capitalised = np.concatenate(([False], upper[word_start]))
        ordinary_trigram = ~capitalised[word[trigram_ends - 1]]

        grams = np.concatenate((unigrams, bigrams, np.where(ordinary_trigram, trigrams | _ORDINARY, trigrams)))
        # Looking up each distinct n-gram once, in sorted order, is the cheap way round.
        distinct, counts = np.unique(grams, return_counts=True)
        ordinary = distinct >= _ORDINARY
        plain = np.where(ordinary, distinct ^ _ORDINARY, distinct)
        rows = np.searchsorted(self.keys, plain)
        rows[rows == len(self.keys)] = 0
        hit = self.keys[rows] == plain
        return TextEvidence(
            script,
            letters,
            groups[script],
            competing,
            kana_share,
            candidates,
            rows[hit],
            counts[hit],
            ordinary[hit],
            int(ordinary_trigram.sum()),
        )


def _word_key(word: str) -> int:
    """A stable 64-bit key (Python's own str hash changes between processes)."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _word_keys(words: list[str]) -> np.ndarray:
    """`_word_key` of each word, as int64: the digests joined and read as one array (a fifth of the time)."""
    blake2b = hashlib.blake2b
    return np.frombuffer(
        b"".join([blake2b(word.encode("utf-8"), digest_size=8).digest() for word in words]), dtype="<i8"
    ).astype(np.int64)


def _most_frequent_words(path: str, count: int) -> Iterator[tuple[int, list[str]]]:
    """(centibels below 1, words) of a wordfreq cBpack list, most frequent first, until `count` words.

    The format is wordfreq's (`wordfreq.read_cBpack`): a gzipped msgpack array of
    a header and then one alphabetical bucket of words per centibel. Read as a
    stream and stopped once `count` words are in: the lists hold ~10 million
    words, of which we keep ~730,000, and unpacking them whole took 3.6 s of
    the detector's 7.3 s start.
    """
    import gzip

    import msgpack

    with gzip.open(path, "rb") as stream:
        unpacker = msgpack.Unpacker(stream, raw=False)
        buckets = unpacker.read_array_header() - 1
        header = unpacker.unpack()
        if not isinstance(header, dict) or header.get("format") != "cB" or header.get("version") != 1:
            raise ValueError(f"unexpected wordfreq list header in {path}: {header!r}")
        taken = 0
        for centibels in range(buckets):
            bucket = unpacker.unpack()[: count - taken]
            yield centibels, bucket
            taken += len(bucket)
            if taken == count:
                return


def text_words(sample: str) -> list[str]:
    """The sample's words as the wordfreq lists spell them: case-folded runs of letters."""
    return _WORD.findall(unicodedata.normalize("NFC", sample).casefold())


class WordFrequencies:
    """The `LEXICON_WORDS` most frequent words of each profile's language in
    `wordfreq`, as one sorted array of word keys with the profile column and
    natural-log frequency of each (word, language): about 730,000 entries,
    under 12 MB."""

    def __init__(self, languages: tuple[str, ...], words_per_language: int = LEXICON_WORDS):
        import wordfreq

        lists = wordfreq.available_languages("best")
        words: list[str] = []
        columns, log_freq = [], []
        # The log-frequency of a word missing from the list; NaN for a profile without a list.
        self.unlisted = np.full(len(languages), np.nan)
        for column, language in enumerate(languages):
            code = _WORDFREQ_LIST.get(language, language)
            if language in _NO_WORD_LIST or code not in lists:
                continue
            # Buckets of words of equal frequency, in centibels below 1 (bucket i: 10 ** (-i / 100)),
            # each sorted alphabetically: the first words are the most frequent, in a fixed order.
            least_frequent = None
            for centibels, bucket in _most_frequent_words(lists[code], words_per_language):
                if bucket:
                    least_frequent = -centibels / 100 * math.log(10)
                    words.extend(bucket)
                    columns.append(np.full(len(bucket), column, dtype=np.int16))
                    log_freq.append(np.full(len(bucket), least_frequent))
            if least_frequent is not None:
                self.unlisted[column] = least_frequent - UNLISTED_WORD_DROP
        keys = _word_keys(words)
        all_columns = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int16)
        all_log_freq = np.concatenate(log_freq) if log_freq else np.zeros(0)
        order = np.lexsort((all_columns, keys))
        self.keys = keys[order]
        self.columns = all_columns[order]
        self.log_freq = all_log_freq.astype(np.float32)[order]
        self.listed = ~np.isnan(self.unlisted)

    def scores(self, words: list[str], candidates: np.ndarray) -> np.ndarray:
        """Per candidate: the words' summed log-frequency in its language,
        minus the best candidate's; 0 for a candidate without a word list, and
        for all when fewer than two candidates have one. Words no candidate
        lists count for none (a name, a typo), so a language with a shorter
        tail of rare words is not favoured."""
        result = np.zeros(len(candidates))
        listed = self.listed[candidates]
        if not words or listed.sum() < 2:
            return result
        keys = np.array([_word_key(word) for word in words], dtype=np.int64)
        starts = np.searchsorted(self.keys, keys, side="left")
        ends = np.searchsorted(self.keys, keys, side="right")
        compared = np.zeros(len(self.unlisted), dtype=bool)
        compared[candidates[listed]] = True
        total = np.zeros(len(self.unlisted))
        counted = 0
        for start, end in zip(starts.tolist(), ends.tolist()):
            columns = self.columns[start:end]
            if not compared[columns].any():
                continue
            counted += 1
            total[columns] += self.log_freq[start:end] - self.unlisted[columns]
        if counted == 0:
            return result
        total = total + counted * self.unlisted
        result[listed] = total[candidates[listed]] - total[candidates[listed]].max()
        return result


def lexicon_scores(lexicon: WordFrequencies, sample: str, candidates: np.ndarray) -> np.ndarray:
    """The word-evidence term before its weight: `WordFrequencies.scores` for a
    short sample, zeros for one of more than `LEXICON_MAX_TEXT_WORDS` space-separated tokens."""
    # Counting space-separated tokens first keeps long texts from paying for the word split.
    if len(sample.split(maxsplit=LEXICON_MAX_TEXT_WORDS)) > LEXICON_MAX_TEXT_WORDS:
        return np.zeros(len(candidates))
    return lexicon.scores(text_words(sample), candidates)


class LanguageDetector:
    """Builds its tables from the profiles once (about a second); then `detect` is pure."""

    def __init__(
        self,
        profiles_directory: pathlib.Path | None = None,
        calibration: Any = language_calibration,
        lexicon: WordFrequencies | None = None,
    ):
        if profiles_directory is None:
            from langdetect.detector_factory import PROFILES_DIRECTORY

            profiles_directory = pathlib.Path(PROFILES_DIRECTORY)
        tables = NgramTables(profiles_directory)
        self._tables = tables
        # May be shared between detectors of the same profiles (the benchmark's cross-validation does).
        self._lexicon = WordFrequencies(tables.languages) if lexicon is None else lexicon
        self._lexicon_weight = calibration.LEXICON_WEIGHT
        self.name = (
            f"wirecopy-ngram-{DETECTOR_VERSION}+langdetect-{importlib.metadata.version('langdetect')}-profiles"
            f"+wordfreq-{importlib.metadata.version('wordfreq')}"
        )
        self._codes = tuple(normalise_code(language) for language in tables.languages)
        # Codes the profiles cover; the scripts in SCRIPT_LANGUAGE add a few more.
        self.profile_codes = frozenset(self._codes)

        weight = np.array(
            [calibration.SEEN_WEIGHT.get(language, calibration.SHARED_SEEN_WEIGHT) for language in tables.languages]
        )
        offset = np.array(
            [calibration.UNSEEN_OFFSET.get(language, calibration.SHARED_UNSEEN_OFFSET) for language in tables.languages]
        )
        unseen = tables.log_floor[:, GRAM_CLASS_ORDER - 1] + offset
        gram_class = tables.gram_class.astype(np.intp)
        scores = np.where(tables.seen, tables.log_prob * weight[:, gram_class].T, unseen[:, gram_class].T).astype(
            np.float32
        )
        # One contiguous matrix per script, of just the profiles that compete in it.
        self._script_scores = {
            script: np.ascontiguousarray(scores[:, [i for i, s in enumerate(tables.profile_script) if s == script]])
            for script in set(tables.profile_script)
        }
        self._bias = np.array([calibration.BIAS.get(language, 0.0) for language in tables.languages])
        self._seen = tables.seen
        self._expected_miss = np.array(
            [
                calibration.TRIGRAM_MISS_RATE.get(language, calibration.SHARED_TRIGRAM_MISS_RATE)
                for language in tables.languages
            ]
        )
        self._dispersion = calibration.TRIGRAM_MISS_DISPERSION

    def detect(
        self, text: str | None, title: str | None = None, hint: str | None = None, threshold: float = DEFAULT_THRESHOLD
    ) -> LanguageResult:
        ranked = self.rank(representative_sample(text, title))
        alternatives = tuple(ranked[:MAX_ALTERNATIVES])
        code, confidence = ranked[0] if ranked else (UNDETERMINED, 0.0)
        if confidence < threshold or not ranked:
            code = UNDETERMINED
        return LanguageResult(code, confidence, alternatives, hint, self.name)

    def rank(self, sample: str) -> list[tuple[str, float]]:
        """(ISO 639-1 code, probability) best first; empty when there is too little evidence."""
        evidence = self._tables.evidence(sample)
        if evidence.script_letters < (1 if evidence.script in _SYLLABIC else MIN_LETTERS):
            return []
        purity = evidence.script_letters / (evidence.script_letters + evidence.competing_letters)
        if evidence.script in SCRIPT_LANGUAGE:
            return [(SCRIPT_LANGUAGE[evidence.script], purity)]
        if evidence.script == "cjk" and evidence.kana_share >= KANA_SHARE_FOR_JAPANESE:
            return [("ja", purity)]
        candidates = evidence.candidates
        if candidates.size == 0 or evidence.rows.size == 0:
            return []
        scores = evidence.counts.astype(np.float32) @ self._script_scores[evidence.script][evidence.rows]
        scores = scores.astype(np.float64) + self._bias[candidates]
        if self._lexicon_weight:
            scores += self._lexicon_weight * lexicon_scores(self._lexicon, sample, candidates)
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        best = candidates[int(np.argmax(probabilities))]
        fit = self._fit(evidence, best)
        merged: dict[str, float] = {}
        for column, p in zip(candidates, probabilities):
            code = self._codes[column]
            merged[code] = merged.get(code, 0.0) + float(p) * fit * purity
        return sorted(merged.items(), key=lambda item: (-item[1], item[0]))

    def _fit(self, evidence: TextEvidence, column: int) -> float:
        """How plausible it is that the text is in `column`'s language at all:
        the share of its trigrams that the profile lacks, as a z-score against
        the language's own texts."""
        expected = self._expected_miss[column]
        total = evidence.ordinary_trigrams
        if total == 0 or expected > MAX_TESTABLE_MISS_RATE:
            return 1.0
        seen = evidence.counts[evidence.ordinary] @ self._seen[evidence.rows[evidence.ordinary], column]
        spread = math.sqrt(self._dispersion * expected * (1.0 - expected) / total)
        excess = ((total - seen) / total - expected) / spread - MISS_Z_ALLOWED
        return math.exp(-0.5 * excess * excess) if excess > 0 else 1.0


# Every worker's setup builds the detector; from the profiles and word lists that took 3.4 s of CPU here (a sixth of
# a 1,000-article run's CPU), unpickling the built one 0.02 s (53 MB).
_CACHED_SOURCES = ("language_detector.py", "language_calibration.py")
_CACHED_PACKAGES = ("langdetect", "wordfreq", "numpy")


def detector_cache_path() -> pathlib.Path:
    """Where `cached_detector` keeps the built detector: in `$WIRECOPY_CACHE` (default `~/.cache/wirecopy`), named
    by a digest of the code that builds it, the versions of the packages whose data it reads, and Python's."""
    digest = hashlib.blake2b(digest_size=12)
    here = pathlib.Path(__file__).parent
    for name in _CACHED_SOURCES:
        digest.update((here / name).read_bytes())
    for package in _CACHED_PACKAGES:
        digest.update(f"{package}={importlib.metadata.version(package)};".encode())
    digest.update(sys.version.encode())
    cache = pathlib.Path(os.environ.get("WIRECOPY_CACHE") or pathlib.Path.home() / ".cache" / "wirecopy")
    return cache / f"language-detector-{digest.hexdigest()}.pickle"


def cached_detector() -> LanguageDetector:
    """The default `LanguageDetector`, unpickled when this code has built it before, else built and kept for the
    next process (an unreadable or unwritable cache only costs the build; older detectors are removed)."""
    path = detector_cache_path()
    try:
        detector = pickle.loads(path.read_bytes())
        if isinstance(detector, LanguageDetector):
            return detector
    except FileNotFoundError:
        pass
    except Exception as error:  # a cut-off or foreign file: rebuilt below
        _LOG.warning("language detector cache %s unreadable (%r); building it again", path, error)
    detector = LanguageDetector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        scratch.write_bytes(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(scratch, path)  # atomic: a concurrent reader sees the whole file or none
        for older in path.parent.glob("language-detector-*.pickle"):
            if older != path:
                older.unlink(missing_ok=True)
    except OSError as error:
        _LOG.info("language detector not cached (%s): each process builds it", error)
    return detector
