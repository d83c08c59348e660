"""`published_at` as feeds send it, read into a UTC time.

The raw article schema (`raw_article.v1.json`) states the same rule:

- ISO 8601 / RFC 3339, with `T` or a space between date and time, with or
  without seconds, fractions and zone (`2026-03-10T16:42:00Z`,
  `2026-03-10 16:42`, `2026-03-10`);
- RFC 822 / 2822, as RSS sends it (`Tue, 10 Mar 2026 16:42:00 GMT`), with a
  numeric zone or one of RFC 2822's names (UT, GMT, Z, EST/EDT, CST/CDT,
  MST/MDT, PST/PDT); other zone names (`CEST`) are not guessed;
- numeric dates with dots, slashes or dashes, optionally followed by a time
  (`10.03.2026`, `10/03/2026 16:42`): read **day first**, as most of the
  world writes them; only a date whose day-first reading has no such month
  (`03/15/2026`) is read month first. A consumer who knows a feed writes
  month first has the raw string (`published_at_raw`).

A time without a zone is UTC. Anything else is unreadable (None): the
article keeps its body and loses only this field.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

_RFC_2822_ZONES = frozenset({"UT", "UTC", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT"})
_RFC_2822 = re.compile(
    r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s+(?P<zone>\S+))?"
)
_NUMERIC_DATE = re.compile(
    r"(?P<first>\d{1,2})(?P<separator>[./-])(?P<second>\d{1,2})(?P=separator)(?P<year>\d{4})"
    r"(?:[ T,]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second_of_minute>\d{2}))?)?"
)


def parse_published_at(text: str) -> dt.datetime | None:
    """`text` as an aware UTC datetime by the rule above, or None when it cannot be read."""
    text = " ".join(text.split())
    if not text:
        return None
    when = _iso_8601(text) or _rfc_2822(text) or _numeric_date(text)
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _iso_8601(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _rfc_2822(text: str) -> dt.datetime | None:
    found = _RFC_2822.fullmatch(text)
    if not found:
        return None
    zone = found.group("zone")
    if zone and zone[0] not in "+-" and zone.upper() not in _RFC_2822_ZONES:
        return None  # email.utils would take an unknown zone name as no zone at all
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def _numeric_date(text: str) -> dt.datetime | None:
    found = _NUMERIC_DATE.fullmatch(text)
    if not found:
        return None
    first, second, year = int(found.group("first")), int(found.group("second")), int(found.group("year"))
    day, month = (first, second) if second <= 12 else (second, first)
    hour, minute, second_of_minute = (int(found.group(name) or 0) for name in ("hour", "minute", "second_of_minute"))
    try:
        return dt.datetime(year, month, day, hour, minute, second_of_minute)
    except ValueError:
        return None
