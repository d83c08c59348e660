"""Language stage: tag every article with its language, or `und` when unsure.

The detector scores the title and cleaned text against langdetect's language
profiles. Determinism matters more than langdetect's defaults: the profile
order is fixed (sorted by name) and the random sampling is seeded, so the same
text gives the same answer in every run and process.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pathlib
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas.records import Article
from transforms.stage import ArticleFn

STAGE = "DetectLanguage"
UNDETERMINED = "und"
# Below this confidence an article is labelled `und`.
DEFAULT_THRESHOLD = 0.9
# Fewer letters than this carry too little evidence for any label.
MIN_LETTERS = 3
MAX_ALTERNATIVES = 3
_SEED = 0


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
        """True when a hint was given and strong evidence says otherwise."""
        hinted = normalise_code(self.hint)
        return hinted is not None and self.code != UNDETERMINED and hinted != self.code

    def to_event(self) -> dict[str, Any]:
        """The `language` object of `enriched_article.v1.json`."""
        return {
            "code": self.code,
            "confidence": round(self.confidence, 4),
            "alternatives": [{"code": code, "probability": round(p, 4)} for code, p in self.alternatives],
            "hint": self.hint,
            "detector": self.detector,
        }


def detection_text(text: str | None, title: str | None) -> str:
    """The text the detector reads: the title, then the body."""
    return "\n\n".join(part for part in (title, text) if part)


def _letter_count(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


class LangdetectDetector:
    """Plain langdetect with sorted profiles and a fixed seed."""

    def __init__(self) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        self.name = f"langdetect-{importlib.metadata.version('langdetect')}"
        self._factory = DetectorFactory()
        profiles = sorted(pathlib.Path(PROFILES_DIRECTORY).iterdir())
        self._factory.load_json_profile([path.read_text(encoding="utf-8") for path in profiles])
        self._factory.set_seed(_SEED)

    def probabilities(self, text: str) -> list[tuple[str, float]]:
        """(ISO 639-1 code, probability) best first; empty when langdetect finds no features."""
        from langdetect.lang_detect_exception import LangDetectException

        detector = self._factory.create()
        detector.append(text)
        try:
            ranked = detector.get_probabilities()
        except LangDetectException:
            return []
        merged: dict[str, float] = {}
        for language in ranked:
            code = normalise_code(language.lang)
            merged[code] = merged.get(code, 0.0) + language.prob
        return sorted(merged.items(), key=lambda item: (-item[1], item[0]))

    def detect(
        self, text: str | None, title: str | None = None, hint: str | None = None, threshold: float = DEFAULT_THRESHOLD
    ) -> LanguageResult:
        sample = detection_text(text, title)
        ranked = self.probabilities(sample) if _letter_count(sample) >= MIN_LETTERS else []
        alternatives = tuple(ranked[:MAX_ALTERNATIVES])
        if not ranked:
            return LanguageResult(UNDETERMINED, 0.0, alternatives, hint, self.name)
        code, confidence = ranked[0]
        if confidence < threshold:
            code = UNDETERMINED
        return LanguageResult(code, min(confidence, 1.0), alternatives, hint, self.name)


class _DetectLanguageFn(ArticleFn):
    stage = STAGE

    def __init__(self, threshold: float):
        self._threshold = threshold
        self._detector: LangdetectDetector | None = None
        self._hint_disagreements = Metrics.counter("wirecopy", "language_hint_disagreement")
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self._detector = LangdetectDetector()

    def _count(self, code: str) -> None:
        if code not in self._counters:
            self._counters[code] = Metrics.counter("wirecopy", f"language_{code}")
        self._counters[code].inc()

    def transform(self, article: Article) -> Iterator[Article]:
        result = self._detector.detect(
            article.fields.get("text"),
            title=article.fields.get("title"),
            hint=article.raw.get("language"),
            threshold=self._threshold,
        )
        self._count(result.code)
        if result.hint_disagrees:
            self._hint_disagreements.inc()
        yield article.with_fields(language=result.to_event())


class DetectLanguage(beam.PTransform):
    """Outcomes in, outcomes out: every Article gets `language`; everything else passes through.

    `threshold`: the confidence below which the code is `und`.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        self._threshold = threshold

    def expand(self, outcomes):
        return outcomes | beam.ParDo(_DetectLanguageFn(self._threshold))
