"""How a stage hands bad input to the dead-letter output.

A stage's DoFn yields good elements on its main output and, for input its pure
functions reject (`Rejected`), a `DeadLetter` tagged `DEAD_LETTERS`. Anything
else a DoFn raises is a bug; `apply_stage` still turns it into a
`stage_error` dead letter carrying the traceback, so one bad record never stops
the pipeline and nothing is dropped.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from schemas.records import Article, DeadLetter, DeadLetterReason, Rejected, SourceRecord

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
