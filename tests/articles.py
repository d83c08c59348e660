"""Articles as the stages after normalise receive them, for tests that build them by hand."""

from __future__ import annotations

import dataclasses
from typing import Any

from wirecopy.schemas.records import Content


def content(article_id: str, **properties: Any) -> Content:
    """A normalised article's content: `properties` over a one-word body from example.org."""
    plain = Content(
        article_id=article_id,
        url=None,
        canonical_url=None,
        source="example.org",
        title="T",
        byline=None,
        published_at=None,
        published_at_raw=None,
        text="Body.",
        word_count=1,
        boilerplate_removed={},
    )
    return dataclasses.replace(plain, **properties)
