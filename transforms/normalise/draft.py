"""The article before and after per-source learning: `draft_article` cleans it with the generic patterns,
`finish` builds the normalised article."""

from __future__ import annotations

import dataclasses

from wirecopy.schemas.records import Article, Content, DeadLetterReason, OfArticle, Rejected

from .boilerplate import remove_boilerplate
from .html_extraction import check_not_binary, extract_html
from .metadata import canonical_url, clean_title, normalise_published_at, registrable_domain_of_canonical
from .text import clean_text, clean_word_count, is_plain_text, paragraph_fingerprints, repair_text


@dataclasses.dataclass(frozen=True, slots=True)
class Draft(OfArticle):
    """An article cleaned by the generic patterns, before per-source template removal."""

    article: Article
    paragraphs: tuple[str, ...]
    matching: tuple[str, ...]  # fingerprint of each paragraph
    content: Content  # all but text, word_count and boilerplate_removed, which `finish` sets
    removed: dict[str, int]
    source_key: str | None  # the source domain whose template state this article reads and feeds
    repairs: frozenset[str] = frozenset()  # what repair_text changed in the title or body


def draft_article(article: Article) -> Draft:
    """Clean one raw article with the generic patterns; raises `Rejected`."""
    raw = article.raw
    url = raw.get("url")
    page = None
    plain = False  # extracted HTML takes the careful path
    if (raw.get("text") or "").strip():
        text, repairs = repair_text(raw["text"])
        plain = is_plain_text(text)
        if not plain:
            check_not_binary(text)
        paragraphs = clean_text(text, plain)
    elif (raw.get("html") or "").strip():
        page = extract_html(raw["html"], url)
        text, repairs = repair_text(page.text)
        paragraphs = clean_text(text)
    else:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "the record has neither text nor html")
    kept, removed, byline = remove_boilerplate(paragraphs)
    if not kept:
        left = (
            f"every paragraph was boilerplate ({', '.join(f'{kind} {count}' for kind, count in removed.items())})"
            if removed
            else "only white space and control or invisible characters"
        )
        raise Rejected(DeadLetterReason.EMPTY_TEXT, f"no text left after cleaning: {left}")
    given_source = " ".join((raw.get("source") or "").split()) or None
    canonical = canonical_url(url)
    domain = registrable_domain_of_canonical(canonical)
    site_names = [name for name in (given_source, domain and domain.split(".")[0], page and page.site_name) if name]
    page_byline = page and page.byline and " ".join(page.byline.split())
    title, title_repairs = repair_text(raw.get("title") or (page and page.title) or "")
    content = Content(
        article_id=raw["id"],
        url=url,
        canonical_url=canonical,
        source=given_source or domain,
        title=clean_title(title or None, site_names),
        byline=page_byline or byline,
        published_at=normalise_published_at(raw.get("published_at") or (page.published_at if page else None)),
        published_at_raw=raw.get("published_at"),
        text="",
        word_count=0,
        boilerplate_removed={},
    )
    source_key = domain or (given_source.casefold() if given_source else None)
    return Draft(
        article,
        tuple(kept),
        tuple(paragraph_fingerprints(kept, plain)),
        content,
        removed,
        source_key,
        frozenset(repairs + title_repairs),
    )


def finish(draft: Draft, template: frozenset[int] = frozenset()) -> Article:
    """The normalised article without the paragraphs at indices `template`; raises `Rejected`."""
    keep = [index for index in range(len(draft.paragraphs)) if index not in template]
    if not keep:
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "nothing but the source's template was left")
    removed = dict(draft.removed)
    if template:
        removed["source_template"] = len(template)
    if not any(draft.matching[index] for index in keep):
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "no letter or digit left after cleaning")
    paragraphs = [draft.paragraphs[index] for index in keep]
    return draft.article.with_content(
        dataclasses.replace(
            draft.content,
            text="\n\n".join(paragraphs),
            word_count=clean_word_count(paragraphs),
            boilerplate_removed=removed,
        )
    )
