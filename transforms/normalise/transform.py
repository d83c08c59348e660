"""The stage: drafts keyed by source, then finished by a stateful DoFn that learns each source's template."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.schemas.records import Article, SourceRecord
from wirecopy.transforms.stage import Outcome, StatefulStageFn, run_stage

from .draft import Draft, draft_article, finish
from .templates import HistoryCoder, SeenArticle, remember, seen_article, template_paragraphs

_LOG = logging.getLogger(__name__)

STAGE = "Normalise"


def _stage_key(element: Any) -> str:
    """The key an outcome travels under to the stateful step: its source domain, else its own record.

    Only source keys ever hold state; keying everything else by its record
    spreads it over the workers instead of piling it on one key.
    """
    if isinstance(element, Draft) and element.source_key is not None:
        return f"source:{element.source_key}"
    record = element.article.source if isinstance(element, Draft) else getattr(element, "source", None)
    if isinstance(record, SourceRecord):
        return f"record:{record.topic}/{record.partition}/{record.offset}"
    return "record:"


class _DraftFn(beam.DoFn):
    """Articles become drafts cleaned by the generic patterns; other outcomes pass through."""

    def __init__(self):
        self._html = Metrics.counter("wirecopy", "normalise_html_articles")
        self._unparsable_dates = Metrics.counter("wirecopy", "normalise_published_at_unparsable")
        self._repaired = {repair: Metrics.counter("wirecopy", f"normalise_repaired_{repair}")
                          for repair in ("html_entities", "mojibake")}
        self._warned = False

    def process(self, element: Outcome) -> Iterator[tuple[str, Any]]:
        if not isinstance(element, Article):
            yield _stage_key(element), element
            return
        for outcome in run_stage(STAGE, element, lambda article: [draft_article(article)]):
            if isinstance(outcome, Draft):
                if not (element.raw.get("text") or "").strip():
                    self._html.inc()
                if outcome.fields["published_at"] is None and element.raw.get("published_at"):
                    self._unparsable_dates.inc()
                    if not self._warned:  # one line per worker: the counter has the rest
                        self._warned = True
                        _LOG.warning("article %s: published_at %r is no time this pipeline reads; the article goes on "
                                     "without it (counter normalise_published_at_unparsable counts every such article)",
                                     outcome.article.article_id, element.raw["published_at"])
                for repair in outcome.repairs:
                    self._repaired[repair].inc()
            yield _stage_key(outcome), outcome


class _SourceTemplateFn(StatefulStageFn):
    """Finishes drafts, removing the paragraphs that recur across a source's articles; state keyed by source domain."""

    HISTORY = ReadModifyWriteStateSpec("recent_articles", HistoryCoder())

    def __init__(self):
        self._removed = Metrics.counter("wirecopy", "normalise_source_template_paragraphs")
        self._sources = Metrics.counter("wirecopy", "normalise_new_sources")

    def process(self, keyed: tuple[str, Any], history_state=beam.DoFn.StateParam(HISTORY)) -> Iterator[Outcome]:
        _, element = keyed
        if not isinstance(element, Draft):
            yield element
        elif element.source_key is None:  # neither URL nor source: no template to learn
            yield from run_stage(STAGE, element.article, lambda _: [finish(element)])
        else:
            yield from self._finish_learning(element, history_state)

    def _finish_learning(self, draft: Draft, history_state) -> list[Outcome]:
        history = history_state.read() or []
        learned: list[list[SeenArticle]] = []

        def work(_: Article) -> list[Outcome]:
            seen, indices = seen_article(draft)
            template = frozenset(indices[position] for position in template_paragraphs(history, seen))
            learned.append(remember(history, seen))
            self._removed.inc(len(template))
            return [finish(draft, template)]  # may reject an article that was all template; it is still remembered

        outcomes = run_stage(STAGE, draft.article, work)
        # State changes only after the last step that can fail (see wirecopy.transforms.stage).
        if learned:
            history_state.write(learned[0])
            if not history:
                self._sources.inc()
        return outcomes


class Normalise(beam.PTransform):
    """Outcomes in, outcomes out: articles normalised (or dead-lettered), everything else passed through."""

    def expand(self, outcomes):
        return (
            outcomes
            # The key type makes Beam pick a deterministic key coder, as stateful DoFns need.
            | "Draft" >> beam.ParDo(_DraftFn()).with_output_types(tuple[str, Any])
            | "SourceTemplate" >> beam.ParDo(_SourceTemplateFn())
        )
