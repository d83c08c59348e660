"""Bad input and HTML: binary bodies refused, HTML articles extracted with trafilatura."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import trafilatura

from wirecopy.schemas.records import DeadLetterReason, Rejected


_SAMPLE = 4096
_BINARY_SHARE = 0.05
_FEWEST_BINARY_CHARACTERS = 16  # a stray control character or two is noise, not binary data
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x12\x15-\x17\x1a\x1b\x1e\x1f\x7f\ufffe\uffff]")


def check_not_binary(body: str) -> None:
    """Reject a body that is binary data rather than text."""
    sample = body[:_SAMPLE]
    if not _CONTROL.search(sample) and "\ufffd" not in sample:
        return
    junk = len(_CONTROL.findall(sample)) + sample.count("\ufffd")
    if junk > max(_BINARY_SHARE * len(sample), _FEWEST_BINARY_CHARACTERS):
        raise Rejected(
            DeadLetterReason.BINARY_CONTENT,
            f"{junk} of the first {len(sample)} characters are control or replacement characters",
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ExtractedPage:
    text: str
    title: str | None
    byline: str | None
    published_at: str | None
    site_name: str | None


_UNDECODABLE_SHARE = 0.01
_HTML_DATE = {"outputformat": "%Y-%m-%dT%H:%M:%S%z", "original_date": True, "extensive_search": False}


def extract_html(html: str, url: str | None = None) -> ExtractedPage:
    """The main content and metadata of an HTML page or fragment; raises `Rejected`."""
    replacement = html.count("\ufffd")
    if replacement > _UNDECODABLE_SHARE * len(html):
        raise Rejected(
            DeadLetterReason.UNDECODABLE_HTML,
            f"{replacement} replacement characters: the page was decoded with the wrong charset",
        )
    check_not_binary(html)
    if "html" not in html[:50].lower():
        html = f"<html><body>{html}</body></html>"  # trafilatura parses whole documents only
    tree = trafilatura.load_html(html)
    if tree is None:
        raise Rejected(DeadLetterReason.UNDECODABLE_HTML, "the markup could not be parsed as HTML")
    document: Any = trafilatura.bare_extraction(  # a Document (not as_dict), which its stub does not say
        tree, url=url, with_metadata=True, include_comments=False, date_extraction_params=_HTML_DATE
    )
    if document is None or not (document.text or "").strip():
        raise Rejected(DeadLetterReason.EMPTY_TEXT, "no main content found in the HTML")
    return ExtractedPage(document.text, document.title, document.author, document.date, document.sitename)
