"""Normalise stage: the article and nothing else, its metadata, and its fingerprint.

Input is a raw article with plain `text` or `html`. HTML goes through
trafilatura, chosen for extraction quality: it scores best (F1 0.924) on its
public extraction benchmark, also reads the title, author and date, and drops
comment sections; resiliparse is faster there but extracts less accurately
and reads no metadata. Plain text is the fast path (see
`benchmarks/bench_normalise.py` for both speeds).

`text` stays readable: Unicode NFC, typography kept; control characters,
soft hyphens, zero-width characters and non-breaking spaces cleaned;
paragraphs separated by exactly one blank line. `fingerprint(text)` is the
separate matching form the syndication stage consumes.

Boilerplate is removed paragraph by paragraph, and counted per reason in
`boilerplate_removed`:

* generic multilingual patterns ("Read more on X", comment forms, related
  links, share/subscribe/cookie lines, copyright, navigation, contact blocks,
  site self-descriptions, syndication notes, bylines) in every article;
* `source_template`: paragraphs learned per source. Articles are keyed by
  their source domain (the URL's registrable domain, else the raw `source`;
  articles with neither skip this step) and a stateful DoFn keeps, per
  source, the paragraph hashes of its `RECENT_ARTICLES` most recent articles
  (at most `MAX_HISTORY_BYTES`, 31 KB, per source; typically under 10 KB).
  A paragraph is template when it recurs in at least `MIN_DISTINCT_ARTICLES`
  articles of the source, and in at least `TEMPLATE_SHARE` of the recent
  ones, counting copies of one article (at-least-once redelivery, or the same
  story filed twice) once. All of a source's state lives under its key, so
  the result does not depend on which worker holds which source. The first
  article of a new source is emitted at once with pattern removal only:
  holding it back until its template recurs would need a timer or an
  unbounded wait for a source that may never publish again, so its template
  paragraphs leak until the second article shows them (the third, when the
  template outweighs the articles' own text, since two such articles look
  like copies).

Bad input never stops the pipeline: no text, nothing left after cleaning,
binary data and undecodable HTML become `empty_text`, `binary_content` and
`undecodable_html` dead letters. An unreadable `published_at` is not worth
losing an article over: it becomes None (`published_at_raw` keeps what the
feed sent), the `normalise_published_at_unparsable` counter counts it and
the first one is logged. HTML entities and mojibake in a plain-text body or
title are repaired (`repair_text`) and counted
(`normalise_repaired_html_entities`, `normalise_repaired_mojibake`).

Modules, one concern each: `text` (readable text and its matching form),
`boilerplate` (the pattern tables and their application), `metadata`,
`html_extraction`, `draft` (the article before and after per-source
learning), `templates` (per-source template learning and its state coder),
`transform` (the stage).
"""

from .boilerplate import boilerplate_reason, remove_boilerplate
from .draft import Draft, draft_article, finish
from .html_extraction import ExtractedPage, check_not_binary, extract_html
from .metadata import canonical_url, clean_title, normalise_published_at, registrable_domain
from .templates import (
    COPY_OVERLAP,
    HISTORY_FORMAT,
    MAX_HISTORY_BYTES,
    MIN_DISTINCT_ARTICLES,
    RECENT_ARTICLES,
    TEMPLATE_SHARE,
    TRACKED_PARAGRAPHS,
    HistoryCoder,
    SeenArticle,
    decode_history,
    encode_history,
    remember,
    seen_article,
    template_paragraphs,
)
from .text import (
    clean_text,
    clean_word_count,
    fingerprint,
    is_plain_text,
    paragraph_fingerprints,
    repair_text,
    word_count,
)
from .transform import STAGE, Normalise, _SourceTemplateFn

__all__ = [
    "COPY_OVERLAP",
    "HISTORY_FORMAT",
    "MAX_HISTORY_BYTES",
    "MIN_DISTINCT_ARTICLES",
    "RECENT_ARTICLES",
    "STAGE",
    "TEMPLATE_SHARE",
    "TRACKED_PARAGRAPHS",
    "Draft",
    "ExtractedPage",
    "HistoryCoder",
    "Normalise",
    "SeenArticle",
    "_SourceTemplateFn",
    "boilerplate_reason",
    "canonical_url",
    "check_not_binary",
    "clean_text",
    "clean_title",
    "clean_word_count",
    "decode_history",
    "draft_article",
    "encode_history",
    "extract_html",
    "finish",
    "fingerprint",
    "is_plain_text",
    "normalise_published_at",
    "paragraph_fingerprints",
    "registrable_domain",
    "remember",
    "remove_boilerplate",
    "repair_text",
    "seen_article",
    "template_paragraphs",
    "word_count",
]
