"""Article metadata: canonical URL, registrable domain, title without the site name, publication time."""

from __future__ import annotations

import re
import urllib.parse
from typing import Iterable

import courlan  # trafilatura's own URL library: registrable domains from its bundled public suffix list

from wirecopy.schemas.codec import utc_timestamp
from wirecopy.schemas.published_at import parse_published_at

from .text import clean_text


_TRACKING_PARAMETERS = {
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "_ga",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name.startswith("utm_") or name in _TRACKING_PARAMETERS


def canonical_url(url: str | None) -> str | None:
    """Lower-case scheme and host, no fragment, no tracking parameters, no
    default port, sorted query, and a path that ends with "/" only at the root.

    None when `url` is not an absolute http(s) URL.
    """
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    query = urllib.parse.urlencode(
        sorted(
            (name, value)
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if not _is_tracking(name)
        )
    )
    return urllib.parse.urlunsplit((scheme, netloc, path, query, ""))


def registrable_domain(url: str | None) -> str | None:
    """The domain a publisher registered (`news.bbc.co.uk` -> `bbc.co.uk`), else the bare host."""
    return registrable_domain_of_canonical(canonical_url(url))


def registrable_domain_of_canonical(canonical: str | None) -> str | None:
    if canonical is None:
        return None
    domain = courlan.extract_domain(canonical)
    if domain:
        return domain.lower()
    host = urllib.parse.urlsplit(canonical).hostname or ""
    return host.removeprefix("www.") or None


_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def _squashed(name: str) -> str:
    return _NOT_ALPHANUMERIC.sub("", name.casefold())


def _names_site(segment: str, site_names: tuple[str, ...]) -> bool:
    segment = _squashed(segment)
    return bool(segment) and any(name and (name in segment or segment in name) for name in site_names)


_TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " :: ", " · ", " • ", " » ", " « ")


def clean_title(title: str | None, site_names: Iterable[str] = ()) -> str | None:
    """One readable line, without the site's name after (or before) a separator.

    A segment after " | " of a few words is always a site or section name; after
    a dash or other separator only when it names the site.
    """
    if not title:
        return None
    title = " ".join(clean_text(title))
    names = tuple(name for name in map(_squashed, site_names) if len(name) >= 3)
    for _ in range(2):
        for separator in _TITLE_SEPARATORS:
            if separator not in title:
                continue
            head, found, tail = title.rpartition(separator)
            if found and head and len(tail.split()) <= 5 and (separator == " | " or _names_site(tail, names)):
                title = head.strip()
                break
            first, found, rest = title.partition(separator)
            if found and rest and len(first.split()) <= 5 and _names_site(first, names):
                title = rest.strip()
                break
        else:
            break
    return title or None


def normalise_published_at(value: str | None) -> str | None:
    """`value` as UTC RFC 3339 with `Z`; None when absent or unreadable (see wirecopy.schemas.published_at)."""
    if not value:
        return None
    when = parse_published_at(value)
    return None if when is None else utc_timestamp(when)
