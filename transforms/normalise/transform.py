"""The stage: drafts keyed by source, then finished by a stateful DoFn that learns each source's template."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.schemas.records import Article, SourceRecord
from wirecopy.transforms.stage import Outcome, StatefulStep, Step, run_stage

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
    record = getattr(element, "source", None)
    if isinstance(record, SourceRecord):
        return f"record:{record.topic}/{record.partition}/{record.offset}"
    return "record:"


class _DraftFn(Step[Article]):
    """Articles become drafts cleaned by the generic patterns, keyed for the per-source step."""

    stage, handles = STAGE, (Article,)

    def __init__(self):
        self._html = Metrics.counter("wirecopy", "normalise_html_articles")
        self._unparsable_dates = Metrics.counter("wirecopy", "normalise_published_at_unparsable")
        self._repaired = {
            repair: Metrics.counter("wirecopy", f"normalise_repaired_{repair}")
            for repair in ("html_entities", "mojibake")
        }
        self._warned = False

    def key_output(self, message: Any) -> str:
        return _stage_key(message)

    def handle(self, key: Any, article: Article) -> list[Draft]:
        draft = draft_article(article)
        if not (article.raw.get("text") or "").strip():
            self._html.inc()
        if draft.content.published_at is None and article.raw.get("published_at"):
            self._unparsable_dates.inc()
            if not self._warned:  # one line per worker: the counter has the rest
                self._warned = True
                _LOG.warning(
                    "article %s: published_at %r is no time this pipeline reads; the article goes on "
                    "without it (counter normalise_published_at_unparsable counts every such article)",
                    article.article_id,
                    article.raw["published_at"],
                )
        for repair in draft.repairs:
            self._repaired[repair].inc()
        return [draft]


class _SourceTemplateFn(StatefulStep[Draft, list[SeenArticle]]):
    """Finishes drafts, removing the paragraphs that recur across a source's articles; state keyed by source domain."""

    stage, handles = STAGE, (Draft,)
    HISTORY = ReadModifyWriteStateSpec("recent_articles", HistoryCoder())

    def __init__(self):
        self._removed = Metrics.counter("wirecopy", "normalise_source_template_paragraphs")
        self._sources = Metrics.counter("wirecopy", "normalise_new_sources")

    def process(self, keyed: tuple[str, Any], history_state=beam.DoFn.StateParam(HISTORY)) -> Iterator[Outcome]:
        return self.route(keyed, history_state)

    def handle_in(self, state: Any, key: Any, draft: Draft) -> Iterable[Outcome]:
        if draft.source_key is None:  # neither URL nor source: no template to learn
            return [finish(draft)]
        return super().handle_in(state, key, draft)

    def step(self, history: list[SeenArticle] | None, draft: Draft) -> tuple[list[SeenArticle], list[Outcome]]:
        history = history or []
        seen, indices = seen_article(draft)
        template = frozenset(indices[position] for position in template_paragraphs(history, seen))
        self._removed.inc(len(template))
        if not history:
            self._sources.inc()
        # An article that was all template is dead-lettered, and still remembered.
        return remember(history, seen), run_stage(STAGE, draft, lambda _: [finish(draft, template)])


class Normalise(beam.PTransform):
    """Outcomes in, outcomes out: articles normalised (or dead-lettered), everything else passed through.

    Example::

        outcomes = records | "Decode" >> DecodeArticles() | "Normalise" >> Normalise()
    """

    def expand(self, outcomes):
        return (
            outcomes
            # The key type makes Beam pick a deterministic key coder, as stateful DoFns need.
            | "Draft" >> beam.ParDo(_DraftFn()).with_output_types(tuple[str, Any])
            | "SourceTemplate" >> beam.ParDo(_SourceTemplateFn())
        )
