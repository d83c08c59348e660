"""Language stage: our detector vs plain langdetect (fixed seed), side by side in one run.

    .venv/bin/python benchmarks/bench_language.py [--shared ../shared] [--limit N] [--threshold T]

Prints, for both detectors:
- `eval/langid` (development half of the lingua test data): mean accuracy over
  langdetect's languages for sentences, word pairs and single words (an `und`
  counts as wrong), the `und` rate, and accuracy among the items labelled.
  The shipped calibration is fitted on all these lines, so it is not what is
  scored here: ours is cross-validated, each half scored with a calibration
  fitted (`language_fit.fit_calibration`, about a minute and a half each, on
  all lines whatever `--limit` says) on the other half.
- Real articles (`corpus/`): English, French, Swahili, Somali from MasakhaNEWS
  and German from 10kGNAD: share correct.
- Languages langdetect does not know (the other MasakhaNEWS languages, and the
  langid files of languages without a profile): how often a label is given
  with confidence at or above the threshold (langdetect: its probability).
- Speed: CPU seconds per article and per sentence, one core, and the ratio.
- How the threshold trades these off, to justify the default.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import pathlib
import statistics
import sys
import time
from dataclasses import dataclass

from language_fit import fit_calibration  # benchmarks/, beside this script
from wirecopy.transforms.language_detector import DEFAULT_THRESHOLD, UNDETERMINED, LanguageDetector, normalise_code

KINDS = ("sentences", "word-pairs", "single-words")
KNOWN_ARTICLES = {"eng": "en", "fra": "fr", "swa": "sw", "som": "so"}
UNKNOWN_ARTICLES = ("hau", "ibo", "yor", "orm", "lin", "lug", "pcm", "run", "sna", "xho", "amh", "tir")
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9)


class PlainLangdetect:
    """langdetect as shipped, with its seed fixed and profiles loaded in a fixed order."""

    def __init__(self) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        self.name = f"langdetect-{importlib.metadata.version('langdetect')}"
        self._factory = DetectorFactory()
        paths = sorted(pathlib.Path(PROFILES_DIRECTORY).iterdir())
        self._factory.load_json_profile([path.read_text(encoding="utf-8") for path in paths])
        self._factory.set_seed(0)

    def top(self, text: str) -> tuple[str, float]:
        from langdetect.lang_detect_exception import LangDetectException

        detector = self._factory.create()
        detector.append(text)
        try:
            ranked = detector.get_probabilities()
        except LangDetectException:
            return UNDETERMINED, 0.0
        merged: dict[str, float] = {}
        for language in ranked:
            merged[normalise_code(language.lang)] = merged.get(normalise_code(language.lang), 0.0) + language.prob
        return max(merged.items(), key=lambda item: (item[1], item[0])) if merged else (UNDETERMINED, 0.0)


class Ours:
    def __init__(self, calibration=None, lexicon=None) -> None:
        self._detector = (
            LanguageDetector(lexicon=lexicon)
            if calibration is None
            else LanguageDetector(calibration=calibration, lexicon=lexicon)
        )
        self.name = self._detector.name
        self.profile_codes = self._detector.profile_codes

    def top(self, text: str) -> tuple[str, float]:
        result = self._detector.detect(text, threshold=0.0)
        return result.code, result.confidence


@dataclass
class Run:
    """Top label and confidence per item, before any threshold, and the CPU time spent."""

    gold: list[str]
    top: list[tuple[str, float]]
    seconds: float

    def codes(self, threshold: float) -> list[str]:
        return [
            code if confidence >= threshold and code != UNDETERMINED else UNDETERMINED for code, confidence in self.top
        ]


def run(detector, texts: list[str], gold: list[str]) -> Run:
    start = time.process_time()
    top = [detector.top(text) for text in texts]
    return Run(gold, top, time.process_time() - start)


def language_scores(result: Run, threshold: float) -> tuple[float, float, float]:
    """Mean over languages of: accuracy, und rate, accuracy among labelled."""
    by_language: dict[str, list[tuple[str, str]]] = {}
    for gold, code in zip(result.gold, result.codes(threshold)):
        by_language.setdefault(gold, []).append((gold, code))
    accuracy, und, labelled_accuracy = [], [], []
    for pairs in by_language.values():
        labelled = [(g, c) for g, c in pairs if c != UNDETERMINED]
        accuracy.append(sum(g == c for g, c in pairs) / len(pairs))
        und.append(1 - len(labelled) / len(pairs))
        if labelled:
            labelled_accuracy.append(sum(g == c for g, c in labelled) / len(labelled))
    return statistics.mean(accuracy), statistics.mean(und), statistics.mean(labelled_accuracy)


def langid_items(root: pathlib.Path, kind: str, codes: list[str], half: int, limit: int | None):
    texts, gold = [], []
    for code in codes:
        lines = (root / kind / f"{code}.txt").read_text(encoding="utf-8").splitlines()[:limit][half::2]
        texts += lines
        gold += [code] * len(lines)
    return texts, gold


def masakhanews(corpus: pathlib.Path, language: str, limit: int | None) -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(corpus / "masakhanews" / "data" / language / "test.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))[:limit]
    return [f"{row['headline']}\n\n{row['text']}" for row in rows]


def german_news(corpus: pathlib.Path, limit: int | None) -> list[str]:
    with open(corpus / "10kgnad-german-news" / "test.csv", encoding="utf-8", newline="") as handle:
        return [row[1] for row in csv.reader(handle, delimiter=";", quotechar="'")][:limit]


def percent(x: float) -> str:
    return f"{100 * x:6.2f} %"


def print_unknown_languages(
    detectors, ours, corpus: pathlib.Path, langid: pathlib.Path, unknown: list[str], t: float, limit: int | None
) -> dict:
    """How often each detector labels articles and sentences of languages langdetect has no profile for."""
    print(f"\n== languages langdetect does not know: labelled with confidence >= {t} (any label is wrong) ==")
    unknown_runs = {}
    for language in UNKNOWN_ARTICLES:
        texts = masakhanews(corpus, language, limit)
        line = f"{language} ({len(texts)} articles)"
        for detector in detectors:
            result = run(detector, texts, [language] * len(texts))
            unknown_runs[(language, detector.name)] = result
            confident = sum(c != UNDETERMINED for c in result.codes(t)) / len(texts)
            labels = {}
            for c in result.codes(t):
                labels[c] = labels.get(c, 0) + 1
            common = ", ".join(f"{c} {n}" for c, n in sorted(labels.items(), key=lambda x: -x[1])[:3])
            line += f"   {'ours' if detector is ours else 'langdetect'} {percent(confident)} [{common}]"
        print(line)
    for detector in detectors:
        rates = [
            sum(c != UNDETERMINED for c in r.codes(t)) / len(r.gold)
            for (_, n), r in unknown_runs.items()
            if n == detector.name
        ]
        print(
            f"mean over these languages, {'ours' if detector is ours else 'langdetect'}: {percent(statistics.mean(rates))}"
        )
    sentence_rates = {}
    for detector in detectors:
        rates = []
        for code in unknown:
            texts, gold = langid_items(langid, "sentences", [code], 0, limit)
            result = run(detector, texts, gold)
            rates.append((code, sum(c not in (UNDETERMINED, code) for c in result.codes(t)) / len(texts)))
        sentence_rates[detector.name] = rates
    print(
        f"langid sentences of the {len(unknown)} languages without a profile (fit half; a script-decided label like hy/ka is right):"
    )
    for detector in detectors:
        rates = sentence_rates[detector.name]
        worst = ", ".join(f"{c} {100 * r:.0f}%" for c, r in sorted(rates, key=lambda x: -x[1])[:6])
        print(
            f"  {'ours' if detector is ours else 'langdetect':10} wrong label {percent(statistics.mean(r for _, r in rates))}  (worst: {worst})"
        )
    return unknown_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1].parent / "shared"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many lines/articles per file (default: all)"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args()
    langid, corpus = args.shared / "eval" / "langid", args.shared / "corpus"

    start = time.process_time()
    ours = Ours()
    load_seconds = time.process_time() - start
    plain = PlainLangdetect()
    detectors = (plain, ours)
    profile_codes = ours.profile_codes
    data_codes = sorted(path.stem for path in (langid / "sentences").glob("*.txt"))
    known = [code for code in data_codes if code in profile_codes]
    unknown = [code for code in data_codes if code not in profile_codes and code not in ("nb", "nn")]
    t = args.threshold
    print(f"ours: {ours.name} (tables built in {load_seconds:.2f} s CPU); plain: {plain.name}, seed 0")
    print(f"threshold {t} (`ours >=0`: always label); `und` counts as wrong in accuracy\n")

    # Ours on each half of eval/langid: calibrated on the other half only.
    cross_validated = {
        half: Ours(
            fit_calibration(ours._detector._tables, langid, parity=1 - half, lexicon=ours._detector._lexicon),
            ours._detector._lexicon,
        )
        for half in (0, 1)
    }
    print(f"\n== eval/langid, mean over langdetect's {len(known)} languages; ours fitted on the other half ==")
    print(f"{'':34}{'accuracy':>12}{'und':>10}{'acc. labelled':>15}")
    runs: dict[tuple[str, str, int], Run] = {}
    for kind in KINDS:
        for half, label in ((0, "even lines"), (1, "odd lines"), (None, "both (mean)")):
            if half is not None:
                texts, gold = langid_items(langid, kind, known, half, args.limit)
                for detector in (plain, cross_validated[half]):
                    runs[(kind, detector.name, half)] = run(detector, texts, gold)
            for name, threshold in (("langdetect", 0.0), (f"ours >={t}", t), ("ours >=0", 0.0)):
                detector_name = plain.name if name == "langdetect" else ours.name
                halves = (0, 1) if half is None else (half,)
                scores = [language_scores(runs[(kind, detector_name, h)], threshold) for h in halves]
                accuracy, und, labelled = (statistics.mean(column) for column in zip(*scores))
                print(f"{kind:13}{label:14}{name:11}{percent(accuracy):>9}{percent(und):>11}{percent(labelled):>13}")
        print()

    print("== real articles, share correct ==")
    article_runs = {}
    sets = {code: masakhanews(corpus, language, args.limit) for language, code in KNOWN_ARTICLES.items()}
    sets["de"] = german_news(corpus, args.limit)
    for code, texts in sets.items():
        line = f"{code} ({len(texts)} articles)"
        for detector in detectors:
            result = run(detector, texts, [code] * len(texts))
            article_runs[(code, detector.name)] = result
            threshold = t if detector is ours else 0.0
            correct = sum(c == code for c in result.codes(threshold)) / len(texts)
            line += f"   {'ours' if detector is ours else 'langdetect'} {percent(correct)}"
        print(line)
    samples_agree = [
        ours._detector.detect(text, threshold=0.0).code == (ours._detector.rank(text) or [(UNDETERMINED, 0.0)])[0][0]
        for texts in sets.values()
        for text in texts
    ]
    print(
        f"ours: the bounded sample gives the full text's answer for {percent(statistics.mean(samples_agree))} of them"
    )
    for detector in detectors:
        total = sum(len(r.gold) for (c, n), r in article_runs.items() if n == detector.name)
        correct = sum(
            sum(x == c for x in r.codes(t if detector is ours else 0.0))
            for (c, n), r in article_runs.items()
            if n == detector.name
        )
        print(
            f"all known-language articles, {'ours' if detector is ours else 'langdetect'}: {percent(correct / total)} of {total}"
        )

    unknown_runs = print_unknown_languages(detectors, ours, corpus, langid, unknown, t, args.limit)

    print("\n== speed, CPU seconds of this process, same run ==")
    for unit, selection in (
        ("article", article_runs),
        ("sentence", {k: v for k, v in runs.items() if k[0] == "sentences"}),
    ):
        per = {}
        for detector in detectors:
            chosen = [r for key, r in selection.items() if detector.name in key]
            per[detector.name] = sum(r.seconds for r in chosen) / sum(len(r.gold) for r in chosen)
        print(
            f"per {unit}: langdetect {1000 * per[plain.name]:.3f} ms, ours {1000 * per[ours.name]:.3f} ms, "
            f"ratio {per[plain.name] / per[ours.name]:.1f}x"
        )

    print("\n== our threshold trade-off (langid: cross-validated, mean of both halves) ==")
    print(
        f"{'threshold':>10}{'sent. acc':>11}{'pairs acc':>11}{'words acc':>11}{'words und':>11}{'words acc lab.':>16}{'articles':>10}{'unknown lab.':>14}"
    )
    for threshold in THRESHOLDS:
        sentences, pairs, words = (
            [
                statistics.mean(column)
                for column in zip(*(language_scores(runs[(kind, ours.name, h)], threshold) for h in (0, 1)))
            ]
            for kind in KINDS
        )
        sentences, pairs = sentences[0], pairs[0]
        article_results = [r for (c, n), r in article_runs.items() if n == ours.name]
        articles = sum(sum(x == g for x, g in zip(r.codes(threshold), r.gold)) for r in article_results) / sum(
            len(r.gold) for r in article_results
        )
        unknown_labelled = statistics.mean(
            sum(c != UNDETERMINED for c in r.codes(threshold)) / len(r.gold)
            for (_, n), r in unknown_runs.items()
            if n == ours.name
        )
        print(
            f"{threshold:>10}{percent(sentences):>11}{percent(pairs):>11}{percent(words[0]):>11}{percent(words[1]):>11}"
            f"{percent(words[2]):>16}{percent(articles):>10}{percent(unknown_labelled):>14}"
        )


if __name__ == "__main__":
    main()
