"""Fit `language_calibration` on the development half of the language-ID data.

    python -m transforms.language_fit --shared ../shared

Uses only the even-numbered lines of `eval/langid/{sentences,word-pairs,
single-words}/<code>.txt`, so the odd lines stay a held-out check (the
benchmark reports both halves). Languages without data (Nepali; Kannada and
Malayalam, which their scripts decide anyway) keep the shared values.

What is fitted, by maximum likelihood of the gold language among the
candidates of the text's script (multinomial logistic regression, L2-pulled
towards the shared values):
- per profile and n-gram order, a weight on log P(n-gram | language);
- per profile and order, the score of an n-gram the profile lacks, as an
  offset from a tenth of the profile's pruning cut-off;
- per profile, a bias.
And, from each language's own sentences, the share of trigrams (of words not
starting with a capital) its profile lacks, with how much it varies beyond
binomial.
"""

from __future__ import annotations

import argparse
import pathlib
import pprint

import numpy as np

from transforms.language_detector import (
    MAX_TESTABLE_MISS_RATE,
    SCRIPT_LANGUAGE,
    NgramTables,
    TextEvidence,
    normalise_code,
)

KINDS = ("sentences", "word-pairs", "single-words")
# The langdetect profile `no` is Norwegian; the data has its two written standards.
_DATA_TO_PROFILE_CODE = {"nb": "no", "nn": "no"}
_REGULARISATION = 1e-3
_STEPS = 2500
_LEARNING_RATE = 0.02
# Sentences shorter than this say little about how the miss rate varies.
_MIN_TRIGRAMS_FOR_DISPERSION = 20


def development_lines(path: pathlib.Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0::2]


def features(tables: NgramTables, evidence: TextEvidence) -> np.ndarray:
    """(6, profiles): per order, the summed log-probability of the n-grams each
    profile has, then per order the number it lacks."""
    order = tables.order[evidence.rows]
    seen = tables.seen[evidence.rows]
    log_prob = tables.log_prob[evidence.rows]
    counts = evidence.counts[:, None]
    out = np.zeros((6, len(tables.languages)))
    for n in (1, 2, 3):
        at = order == n
        out[n - 1] = (np.where(seen[at], log_prob[at], 0.0) * counts[at]).sum(axis=0)
        out[n + 2] = (~seen[at] * counts[at]).sum(axis=0)
    return out


def collect(tables: NgramTables, langid: pathlib.Path):
    codes = np.array([normalise_code(language) for language in tables.languages])
    items, masks, gold = [], [], []
    miss = {language: [] for language in tables.languages}
    for path in sorted((langid / "sentences").glob("*.txt")):
        code = _DATA_TO_PROFILE_CODE.get(path.stem, path.stem)
        if code not in codes:
            continue
        for kind in KINDS:
            for line in development_lines(langid / kind / path.name):
                evidence = tables.evidence(line)
                if evidence.script in SCRIPT_LANGUAGE or evidence.rows.size == 0:
                    continue
                mask = np.zeros(len(codes), dtype=bool)
                mask[evidence.candidates] = True
                is_gold = codes == code
                if mask.sum() < 2 or not (mask & is_gold).any():
                    continue
                items.append(features(tables, evidence))
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
    languages = len(tables.languages)
    has_data = gold.any(axis=0)
    shared_weight, shared_offset = np.ones(3), np.zeros(3)
    weight_dev, offset_dev, bias = np.zeros((languages, 3)), np.zeros((languages, 3)), np.zeros(languages)
    params = [shared_weight, shared_offset, weight_dev, offset_dev, bias]
    first, second = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    seen_sums, unseen_counts = items[:, :3, :], items[:, 3:, :]
    for step in range(1, _STEPS + 1):
        weight = shared_weight + weight_dev
        unseen = tables.log_floor + shared_offset + offset_dev
        scores = np.einsum("inl,ln->il", seen_sums, weight) + np.einsum("inl,ln->il", unseen_counts, unseen) + bias
        scores = np.where(masks, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        gold_probability = (probabilities * gold).sum(axis=1, keepdims=True)
        residual = (probabilities * gold / gold_probability - probabilities) / len(items)
        grad_weight = np.einsum("il,inl->ln", residual, seen_sums)
        grad_unseen = np.einsum("il,inl->ln", residual, unseen_counts)
        grads = [
            grad_weight.sum(axis=0),
            grad_unseen.sum(axis=0),
            (grad_weight - _REGULARISATION * weight_dev) * has_data[:, None],
            (grad_unseen - _REGULARISATION * offset_dev) * has_data[:, None],
            (residual.sum(axis=0) - _REGULARISATION * bias) * has_data,
        ]
        # Adam, ascending the log-likelihood, with the step size decaying linearly to a tenth.
        learning_rate = _LEARNING_RATE * (1 - 0.9 * step / _STEPS)
        for param, grad, m, v in zip(params, grads, first, second):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param += learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-9)
        if step % 250 == 0:
            print(f"step {step}: mean log-likelihood {np.log(gold_probability).mean():.4f}")
    return shared_weight, shared_offset, shared_weight + weight_dev, shared_offset + offset_dev, bias, has_data


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


def render(tables, fitted, rates, dispersion) -> str:
    shared_weight, shared_offset, weight, offset, bias, has_data = fitted
    fitted_languages = [(i, l) for i, l in enumerate(tables.languages) if has_data[i]]
    as_tuple = lambda row: tuple(round(float(x), 4) for x in row)  # noqa: E731
    seen_weight = {l: as_tuple(weight[i]) for i, l in fitted_languages}
    unseen_offset = {l: as_tuple(offset[i]) for i, l in fitted_languages}
    biases = {l: round(float(bias[i]), 4) for i, l in fitted_languages}
    miss = {l: round(r, 4) for l, r in sorted(rates.items())}
    shared_miss = round(float(np.median(list(rates.values()))), 4)
    return f'''"""Calibration of the language detector; generated by `python -m transforms.language_fit`, do not edit.

Fitted on the even-numbered lines of the development language-ID data only.
"""

SHARED_SEEN_WEIGHT = {as_tuple(shared_weight)}
SHARED_UNSEEN_OFFSET = {as_tuple(shared_offset)}
SHARED_TRIGRAM_MISS_RATE = {shared_miss}
TRIGRAM_MISS_DISPERSION = {round(dispersion, 4)}

SEEN_WEIGHT = {pprint.pformat(seen_weight, width=110)}

UNSEEN_OFFSET = {pprint.pformat(unseen_offset, width=110)}

BIAS = {pprint.pformat(biases, width=110)}

TRIGRAM_MISS_RATE = {pprint.pformat(miss, width=110)}
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).with_name("language_calibration.py"))
    args = parser.parse_args()
    from langdetect.detector_factory import PROFILES_DIRECTORY

    tables = NgramTables(pathlib.Path(PROFILES_DIRECTORY))
    items, masks, gold, miss = collect(tables, args.shared / "eval" / "langid")
    print(f"{len(items)} development items")
    fitted = fit_scores(tables, items, masks, gold)
    rates, dispersion = miss_rates(miss)
    args.out.write_text(render(tables, fitted, rates, dispersion), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
