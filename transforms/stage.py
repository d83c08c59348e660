"""How stages pass work along: one stream from the reader to the sink.

On the local runner (FnApiRunner) a Flatten of several PCollections runs in
the runner, outside the fused stages: after an unbounded Kafka read it stalls
until the read ends, while the reader keeps committing offsets. So nothing in
the streaming path merges streams: every stage takes and returns ONE
PCollection of outcomes (`Article`, `DeadLetter`, `ClusterEvent`), works on
the Articles and passes everything else through untouched, and the sink at the
end writes each outcome to its topic.

A stage's pure functions raise `Rejected` for input they cannot use;
`run_stage` turns that, and any unexpected exception (a bug), into a
`DeadLetter` in the same stream, so one bad record never stops the pipeline
and nothing is dropped.
"""

from __future__ import annotations

import traceback
from typing import Callable, Iterable, Union

import apache_beam as beam

from schemas.records import Article, ClusterEvent, DeadLetter, DeadLetterReason, Rejected

Outcome = Union[Article, DeadLetter, ClusterEvent]


def run_stage(stage: str, article: Article, work: Callable[[Article], Iterable[Outcome]]) -> list[Outcome]:
    """The outcomes of one stage's work on one article; failures become dead letters.

    The outcomes are collected before any is emitted, so a failure halfway
    never emits part of an article's results. A stateful stage must update its
    state only after the last step that can raise.
    """
    try:
        return list(work(article))
    except Rejected as rejection:
        return [DeadLetter(rejection.reason, rejection.detail, stage, article.source, article.article_id)]
    except Exception as error:  # a stage's bug costs one record a dead letter, never the pipeline
        trace = "".join(traceback.format_exception(error)[-3:])
        return [DeadLetter(DeadLetterReason.STAGE_ERROR, f"{error!r}\n{trace}", stage, article.source, article.article_id)]


class ArticleFn(beam.DoFn):
    """A stateless stage: subclasses name their `stage` and implement `transform`."""

    stage: str

    def transform(self, article: Article) -> Iterable[Outcome]:
        raise NotImplementedError

    def process(self, element: Outcome) -> Iterable[Outcome]:
        if isinstance(element, Article):
            yield from run_stage(self.stage, element, self.transform)
        else:
            yield element


# ---- Transitional: the two-stream stage helpers, removed once every stage module uses the one-stream contract above.
from apache_beam import pvalue  # noqa: E402
from typing import Any  # noqa: E402
from schemas.records import SourceRecord  # noqa: E402

DEAD_LETTERS = "dead_letters"
_GOOD = "good"
_CRASHED = "crashed"


def reject(stage: str, element: Article | SourceRecord, rejection: Rejected, article_id: str | None = None):
    """The tagged dead-letter output for an element a stage rejected."""
    if isinstance(element, Article):
        source, article_id = element.source, element.article_id
    else:
        source = element
    return pvalue.TaggedOutput(
        DEAD_LETTERS, DeadLetter(rejection.reason, rejection.detail, stage, source, article_id)
    )


def _source_of(element: Any) -> tuple[SourceRecord, str | None]:
    """Find the source record in a stage's input: an Article, a SourceRecord, or a keyed one."""
    if isinstance(element, tuple) and len(element) == 2 and not isinstance(element, SourceRecord):
        element = element[1]
    if isinstance(element, Article):
        return element.source, element.article_id
    if isinstance(element, SourceRecord):
        return element, None
    raise TypeError(f"cannot dead-letter an element of type {type(element).__name__}")


def _crash_to_dead_letter(failure: tuple[Any, tuple[type, str, list[str]]], stage: str) -> DeadLetter:
    element, (_, message, trace) = failure
    source, article_id = _source_of(element)
    detail = f"{message}\n{''.join(trace[-3:])}"
    return DeadLetter(DeadLetterReason.STAGE_ERROR, detail, stage, source, article_id)


def apply_stage(
    pcoll: beam.PCollection, stage: str, dofn: beam.DoFn, *, stateful: bool = False
) -> tuple[beam.PCollection, beam.PCollection]:
    """Apply `dofn` as stage `stage`; return (good elements, dead letters)."""
    outputs = pcoll | stage >> beam.ParDo(dofn).with_outputs(DEAD_LETTERS, main=_GOOD).with_exception_handling(
        main_tag=_GOOD,
        dead_letter_tag=_CRASHED,
        # A stateful stage that crashes on an element may have updated its state
        # for it already; its DoFn must update state only after the last step
        # that can raise.
        allow_unsafe_userstate_in_process=stateful,
    )
    crashed = outputs[_CRASHED] | f"{stage}Crashes" >> beam.Map(_crash_to_dead_letter, stage)
    dead_letters = (outputs[DEAD_LETTERS], crashed) | f"{stage}DeadLetters" >> beam.Flatten()
    return outputs[_GOOD], dead_letters
