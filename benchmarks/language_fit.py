"""Fit `language_calibration` on the development half of the language-ID data.

    .venv/bin/python benchmarks/language_fit.py --shared ../shared

Uses the lines of `eval/langid/{sentences,word-pairs,single-words}/<code>.txt`
(500 a file; the held-back half of the same test data is what the detector is
judged on). The shipped calibration is fitted on all of them; to estimate how
it does on text it has not seen, `benchmarks/bench_language.py` cross-validates:
it fits on the even-numbered lines and scores the odd ones, and the other way
round (`fit_calibration(..., parity=0 or 1)`). Languages without data (Nepali;
Kannada and Malayalam, which their scripts decide anyway) keep the shared
values.

What is fitted, by maximum likelihood of the gold language among the
candidates of the text's script (multinomial logistic regression, L2-pulled
towards the shared values):
- per profile and n-gram class (`GRAM_CLASSES`: unigrams; bigrams and trigrams
  at a word's start, at its end, inside it), a weight on log P(n-gram | language);
- per profile and class, the score of an n-gram the profile lacks, as an
  offset from a tenth of the profile's pruning cut-off for that order;
- per profile, a bias;
- then, with those fixed, one weight for the word evidence of short texts
  (`lexicon_scores`: the words' wordfreq log-frequencies, relative to the
  best listed candidate).
And, from each language's own sentences, the share of trigrams (of words not
starting with a capital) its profile lacks, with how much it varies beyond
binomial.
"""

from __future__ import annotations

import argparse
import pathlib
import pprint
import textwrap
import types

import numpy as np

from wirecopy.transforms.language_detector import (
    GRAM_CLASS_ORDER,
    GRAM_CLASSES,
    MAX_TESTABLE_MISS_RATE,
    SCRIPT_LANGUAGE,
    NgramTables,
    TextEvidence,
    WordFrequencies,
    lexicon_scores,
    normalise_code,
)

KINDS = ("sentences", "word-pairs", "single-words")
# The langdetect profile `no` is Norwegian; the data has its two written standards.
_DATA_TO_PROFILE_CODE = {"nb": "no", "nn": "no"}
_REGULARISATION = 1e-3
_STEPS = 1500
_NEWTON_STEPS = 8
_LEARNING_RATE = 0.02
# Sentences shorter than this say little about how the miss rate varies.
_MIN_TRIGRAMS_FOR_DISPERSION = 20


def development_lines(path: pathlib.Path, parity: int | None = None) -> list[str]:
    """The file's lines: all of them, or only the even-numbered (parity 0) or odd-numbered (1) ones."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines if parity is None else lines[parity::2]


def features(tables: NgramTables, evidence: TextEvidence, word_scores: np.ndarray) -> np.ndarray:
    """(2 * classes + 1, profiles): per n-gram class, the summed log-probability of
    the n-grams each profile has, then per class the number it lacks, then the
    word-evidence term (`word_scores`, per candidate)."""
    classes = len(GRAM_CLASSES)
    gram_class = tables.gram_class[evidence.rows]
    seen = tables.seen[evidence.rows]
    log_prob = tables.log_prob[evidence.rows]
    counts = evidence.counts[:, None]
    out = np.zeros((2 * classes + 1, len(tables.languages)))
    for k in range(classes):
        at = gram_class == k
        out[k] = (np.where(seen[at], log_prob[at], 0.0) * counts[at]).sum(axis=0)
        out[classes + k] = (~seen[at] * counts[at]).sum(axis=0)
    out[2 * classes, evidence.candidates] = word_scores
    return out


def collect(tables: NgramTables, lexicon: WordFrequencies, langid: pathlib.Path, parity: int | None):
    codes = np.array([normalise_code(language) for language in tables.languages])
    items, masks, gold = [], [], []
    miss = {language: [] for language in tables.languages}
    for path in sorted((langid / "sentences").glob("*.txt")):
        code = _DATA_TO_PROFILE_CODE.get(path.stem, path.stem)
        if code not in codes:
            continue
        for kind in KINDS:
            for line in development_lines(langid / kind / path.name, parity):
                evidence = tables.evidence(line)
                if evidence.script in SCRIPT_LANGUAGE or evidence.rows.size == 0:
                    continue
                mask = np.zeros(len(codes), dtype=bool)
                mask[evidence.candidates] = True
                is_gold = codes == code
                if mask.sum() < 2 or not (mask & is_gold).any():
                    continue
                items.append(features(tables, evidence, lexicon_scores(lexicon, line, evidence.candidates)))
                masks.append(mask)
                gold.append(is_gold)
                total = evidence.ordinary_trigrams
                if kind == "sentences" and total:
                    ordinary = evidence.ordinary
                    for column in np.flatnonzero(is_gold & mask):
                        seen = int(evidence.counts[ordinary] @ tables.seen[evidence.rows[ordinary], column])
                        miss[tables.languages[column]].append((total - seen, total))
    return np.array(items), np.array(masks), np.array(gold), miss


def fit_scores(tables: NgramTables, items: np.ndarray, masks: np.ndarray, gold: np.ndarray):
    """The n-gram calibration, on the n-gram features alone (the word evidence
    is fitted after it, `fit_lexicon_weight`); also returns each item's
    calibrated scores."""
    classes = len(GRAM_CLASSES)
    has_data = gold.any(axis=0)
    # (profiles, items, features), float32: one batched matrix product per step.
    by_profile = np.ascontiguousarray(items[:, : 2 * classes, :].transpose(2, 0, 1), dtype=np.float32)
    floor = tables.log_floor[:, GRAM_CLASS_ORDER - 1]
    floor_scores = np.einsum("ikl,lk->il", items[:, classes : 2 * classes, :], floor)
    shared = np.concatenate((np.ones(classes), np.zeros(classes)))  # weights, then unseen offsets
    deviation, bias = np.zeros((len(tables.languages), 2 * classes)), np.zeros(len(tables.languages))
    params = [shared, deviation, bias]
    first, second = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for step in range(1, _STEPS + 1):
        coefficients = (shared + deviation).astype(np.float32)
        scores = np.matmul(by_profile, coefficients[:, :, None])[:, :, 0].T + floor_scores + bias
        scores = np.where(masks, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        gold_probability = (probabilities * gold).sum(axis=1, keepdims=True)
        residual = (probabilities * gold / gold_probability - probabilities) / len(items)
        grad = np.matmul(residual.T.astype(np.float32)[:, None, :], by_profile)[:, 0, :].astype(np.float64)
        grads = [
            grad.sum(axis=0),
            (grad - _REGULARISATION * deviation) * has_data[:, None],
            (residual.sum(axis=0) - _REGULARISATION * bias) * has_data,
        ]
        # Adam, ascending the log-likelihood, with the step size decaying linearly to a tenth.
        learning_rate = _LEARNING_RATE * (1 - 0.9 * step / _STEPS)
        for param, g, m, v in zip(params, grads, first, second):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            param += learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-9)
        if step % 500 == 0:
            print(f"step {step}: mean log-likelihood {np.log(gold_probability).mean():.4f}", flush=True)
    coefficients = shared + deviation
    scores = np.matmul(by_profile, coefficients.astype(np.float32)[:, :, None])[:, :, 0].T + floor_scores + bias
    return (
        shared[:classes],
        shared[classes:],
        coefficients[:, :classes],
        coefficients[:, classes:],
        bias,
        has_data,
        scores,
    )


def fit_lexicon_weight(scores: np.ndarray, word_scores: np.ndarray, masks: np.ndarray, gold: np.ndarray) -> float:
    """The weight of the word evidence on top of the fitted n-gram scores, by
    maximum likelihood (Newton's method: the log-likelihood is concave in it).
    Fitted after the n-gram calibration, not with it: fitted together, the
    n-gram weights lean on the words (every development line is short enough
    to have them) and no longer stand on their own for long texts, where the
    words are not used (English news came out as Catalan)."""
    weight = 0.0
    for _ in range(_NEWTON_STEPS):
        logits = np.where(masks, scores + weight * word_scores, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        x = np.where(masks, word_scores, 0.0)
        expected = (probabilities * x).sum(axis=1)
        # A language may have two gold profiles (zh-cn, zh-tw): their scores, weighed by probability.
        gold_probabilities = probabilities * gold
        gold_x = (gold_probabilities * x).sum(axis=1) / gold_probabilities.sum(axis=1)
        gradient = (gold_x - expected).sum()
        curvature = ((probabilities * x * x).sum(axis=1) - expected**2).sum()
        if curvature <= 0:
            break
        weight += gradient / curvature
    print(f"word-evidence weight {weight:.4f}", flush=True)
    return weight


def miss_rates(miss: dict[str, list[tuple[int, int]]]) -> tuple[dict[str, float], float]:
    """Per language, the pooled share of trigrams its profile lacks; and the
    dispersion: how much more a sentence's share varies than binomially
    (neighbouring trigrams are related, and sentences differ)."""
    rates = {}
    squared_z = []
    for language, pairs in miss.items():
        if not pairs:
            continue
        missing, total = np.array(pairs).T
        rate = missing.sum() / total.sum()
        rates[language] = float(rate)
        if 0 < rate < MAX_TESTABLE_MISS_RATE:
            long = total >= _MIN_TRIGRAMS_FOR_DISPERSION
            z = (missing[long] / total[long] - rate) / np.sqrt(rate * (1 - rate) / total[long])
            squared_z.extend(z * z)
    return rates, float(np.mean(squared_z))


def fit_calibration(
    tables: NgramTables, langid: pathlib.Path, parity: int | None = None, lexicon: WordFrequencies | None = None
) -> types.SimpleNamespace:
    """The calibration fitted on all development lines (`parity` None) or on
    the even (0) or odd (1) ones: what `language_calibration` holds, as attributes."""
    lexicon = WordFrequencies(tables.languages) if lexicon is None else lexicon
    items, masks, gold, miss = collect(tables, lexicon, langid, parity)
    print(f"{len(items)} development items", flush=True)
    shared_weight, shared_offset, weight, offset, bias, has_data, scores = fit_scores(tables, items, masks, gold)
    lexicon_weight = fit_lexicon_weight(scores, items[:, -1, :], masks, gold)
    rates, dispersion = miss_rates(miss)
    fitted_languages = [(i, language) for i, language in enumerate(tables.languages) if has_data[i]]
    as_tuple = lambda row: tuple(round(float(x), 4) for x in row)  # noqa: E731
    return types.SimpleNamespace(
        SHARED_SEEN_WEIGHT=as_tuple(shared_weight),
        SHARED_UNSEEN_OFFSET=as_tuple(shared_offset),
        LEXICON_WEIGHT=round(float(lexicon_weight), 4),
        SHARED_TRIGRAM_MISS_RATE=round(float(np.median(list(rates.values()))), 4),
        TRIGRAM_MISS_DISPERSION=round(dispersion, 4),
        SEEN_WEIGHT={language: as_tuple(weight[i]) for i, language in fitted_languages},
        UNSEEN_OFFSET={language: as_tuple(offset[i]) for i, language in fitted_languages},
        BIAS={language: round(float(bias[i]), 4) for i, language in fitted_languages},
        TRIGRAM_MISS_RATE={language: round(r, 4) for language, r in sorted(rates.items())},
    )


def render(calibration: types.SimpleNamespace) -> str:
    about = textwrap.fill(
        "Fitted on all lines of the development language-ID data; the benchmark's langid figures come from "
        "cross-validation (fitted on one half, scored on the other), not from this calibration. Weights and "
        "offsets are per n-gram class: " + ", ".join(name for name, _ in GRAM_CLASSES) + ". LEXICON_WEIGHT "
        "weighs the word evidence of short texts (wordfreq log-frequencies).",
        width=78,
    )
    return f'''"""Calibration of the language detector; generated by `benchmarks/language_fit.py`, do not edit.

{about}
"""

SHARED_SEEN_WEIGHT = {calibration.SHARED_SEEN_WEIGHT}
SHARED_UNSEEN_OFFSET = {calibration.SHARED_UNSEEN_OFFSET}
LEXICON_WEIGHT = {calibration.LEXICON_WEIGHT}
SHARED_TRIGRAM_MISS_RATE = {calibration.SHARED_TRIGRAM_MISS_RATE}
TRIGRAM_MISS_DISPERSION = {calibration.TRIGRAM_MISS_DISPERSION}

SEEN_WEIGHT = {pprint.pformat(calibration.SEEN_WEIGHT, width=110)}

UNSEEN_OFFSET = {pprint.pformat(calibration.UNSEEN_OFFSET, width=110)}

BIAS = {pprint.pformat(calibration.BIAS, width=110)}

TRIGRAM_MISS_RATE = {pprint.pformat(calibration.TRIGRAM_MISS_RATE, width=110)}
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1].parent / "shared"
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[1] / "transforms" / "language_calibration.py",
    )
    args = parser.parse_args()
    from langdetect.detector_factory import PROFILES_DIRECTORY

    tables = NgramTables(pathlib.Path(PROFILES_DIRECTORY))
    calibration = fit_calibration(tables, args.shared / "eval" / "langid")
    args.out.write_text(render(calibration), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
