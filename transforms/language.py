"""Language stage: tag every article with its language, or `und` when unsure.

The detector (`wirecopy.transforms.language_detector`) scores a bounded sample of the
title and cleaned text against langdetect's language profiles, exactly and
deterministically; see that module for how. This module is the Beam stage:
one detector per DoFn instance, made in `setup()` (unpickled when this code
built it before: `cached_detector`), and counters per detected
language and for hints the evidence contradicts.
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from wirecopy.schemas.records import Article
from wirecopy.transforms.language_detector import (
    DEFAULT_THRESHOLD,
    UNDETERMINED,
    LanguageDetector,
    cached_detector,
    LanguageResult,
    normalise_code,
    representative_sample,
)
from wirecopy.transforms.stage import Step

__all__ = [
    "DEFAULT_THRESHOLD",
    "STAGE",
    "UNDETERMINED",
    "DetectLanguage",
    "LanguageDetector",
    "LanguageResult",
    "normalise_code",
    "representative_sample",
]

STAGE = "DetectLanguage"


class _DetectLanguageFn(Step[Article]):
    stage, handles = STAGE, (Article,)
    _detector: LanguageDetector  # built in setup(), on the worker

    def __init__(self, threshold: float):
        self._threshold = threshold
        self._hint_disagreements = Metrics.counter("wirecopy", "language_hint_disagreement")
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self._detector = cached_detector()

    def _count(self, code: str) -> None:
        if code not in self._counters:
            self._counters[code] = Metrics.counter("wirecopy", f"language_{code}")
        self._counters[code].inc()

    def handle(self, key: Any, article: Article) -> Iterator[Article]:
        result = self._detector.detect(
            article.normalised.text,
            title=article.normalised.title,
            hint=article.raw.get("language"),
            threshold=self._threshold,
        )
        self._count(result.code)
        if result.hint_disagrees:
            self._hint_disagreements.inc()
        yield article.with_language(result.to_event())


class DetectLanguage(beam.PTransform):
    """Outcomes in, outcomes out: every Article gets `language`; everything else passes through.

    `threshold`: the confidence below which the code is `und`.

    Example::

        outcomes | "Normalise" >> Normalise() | "Language" >> DetectLanguage(threshold=0.5)
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        self._threshold = threshold

    def expand(self, outcomes):
        return outcomes | beam.ParDo(_DetectLanguageFn(self._threshold))
