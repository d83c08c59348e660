"""`wirecopy report`: a run's outputs as one self-contained HTML page.

The page shows the stories with their members side by side and the passages
they share highlighted, each story's pickup timeline (which outlets ran it and
when, an inline SVG chart), the languages, the dead letters by reason with the
start of their payload, and the run's counts. Everything is inline (CSS, one
small script, SVG), so the file works offline and can be mailed around; its
Content-Security-Policy allows nothing else, not even a network request, and
every text from the records is escaped.

Pure functions of the records (`RunOutputs`), so tests call them directly.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import datetime as dt
import hashlib
import html
import unicodedata
from typing import Iterable, Mapping, Sequence

from wirecopy.pipelines.outputs import RunOutputs
from wirecopy.transforms.stories import StoryTable

PAYLOAD_START_CHARS = 300


@dataclasses.dataclass(frozen=True)
class Member:
    article_id: str
    source: str | None
    url: str | None
    title: str | None
    language: str
    published_at: dt.datetime | None
    seen_at: dt.datetime  # published_at, else when it joined (event time): its place on the timeline
    match: str
    similarity: float
    shared: float | None  # share of its text found in the story; None without evidence
    matched_id: str | None
    passages: tuple[tuple[int, int], ...]  # [start, end) character offsets into `text`
    text: str | None  # None when the article is not among the outputs read


@dataclasses.dataclass(frozen=True)
class Story:
    story_id: str
    title: str | None
    members: tuple[Member, ...]  # earliest first
    member_count: int  # all members, listed or not
    absorbed: tuple[str, ...]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _optional_time(text: str | None) -> dt.datetime | None:
    return parse_time(text) if text else None


def stories_from_records(story_records: Iterable[dict], articles: Iterable[dict]) -> list[Story]:
    """Stories as a consumer of the story topic holds them (`StoryTable`): an
    absorbed story's members shown under the story that absorbed it."""
    table = StoryTable()
    for record in story_records:
        table.apply(record)
    text_of = {article["article_id"]: article["text"] for article in articles}
    current = table.story_of()  # one pass over the table; `resolve` makes one per call
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for story_id, record in table.records.items():
        root = current[record["members"][0]["article_id"]] if record["members"] else table.resolve(story_id)
        groups[root].append(record)
    stories = []
    for root_id, records in groups.items():
        records.sort(key=lambda record: record["story_id"] != root_id)  # the surviving story's record first
        members: dict[str, Member] = {}
        for record in records:
            for entry in record["members"]:
                members.setdefault(entry["article_id"], _member_from_entry(entry, text_of.get(entry["article_id"])))
        listed = tuple(sorted(members.values(), key=lambda m: (m.seen_at, m.article_id)))
        absorbed = {story_id for record in records for story_id in record["absorbed"]}
        absorbed |= {record["story_id"] for record in records if record["story_id"] != root_id}
        # An absorbed story keeps its members and its count; the surviving one counts only its own.
        member_count = max(sum(record["member_count"] for record in records), len(listed))
        title = next((record["title"] for record in records if record.get("title")), None) or _first_title(listed)
        stories.append(Story(root_id, title, listed, member_count, tuple(sorted(absorbed))))
    return _ordered(stories)


def _member_from_entry(entry: dict, text: str | None) -> Member:
    published_at = _optional_time(entry.get("published_at"))
    return Member(
        article_id=entry["article_id"],
        source=entry.get("source"),
        url=entry.get("url"),
        title=entry.get("title"),
        language=entry.get("language") or "und",
        published_at=published_at,
        seen_at=published_at or parse_time(entry["joined_at"]),
        match=entry["match"],
        similarity=entry["similarity"],
        text=text,
        **_evidence(entry.get("evidence")),
    )


def _evidence(evidence: dict | None) -> dict:
    evidence = evidence or {}
    return {
        "shared": evidence.get("shared"),
        "matched_id": evidence.get("matched_id"),
        "passages": tuple((start, end) for start, end in evidence.get("passages", ())),
    }


def merged_cluster_root(cluster_events: Iterable[dict]):
    """Cluster id → the cluster it ends up in once the `merged` events are applied (union-find)."""
    into: dict[str, str] = {}

    def root(cluster_id: str) -> str:
        path = []
        while cluster_id in into:
            path.append(cluster_id)
            cluster_id = into[cluster_id]
        for step in path:
            into[step] = cluster_id
        return cluster_id

    for event in cluster_events:
        if event["type"] == "merged" and root(event["from"]) != root(event["into"]):
            into[root(event["from"])] = root(event["into"])
    return root


def stories_from_clusters(articles: Iterable[dict], cluster_events: Iterable[dict]) -> list[Story]:
    """Stories from the enriched articles' clusters (with their evidence) and
    the merged events, for articles that no story record read lists."""
    root = merged_cluster_root(cluster_events)
    groups: dict[str, list[Member]] = collections.defaultdict(list)
    for article in articles:
        published_at = _optional_time(article["published_at"])
        groups[root(article["cluster"]["id"])].append(
            Member(
                article_id=article["article_id"],
                source=article["source"],
                url=article["url"],
                title=article["title"],
                language=article["language"]["code"],
                published_at=published_at,
                seen_at=published_at or parse_time(article["processed_at"]),
                match=article["cluster"]["match"],
                similarity=article["cluster"]["similarity"],
                text=article["text"],
                **_evidence(article["cluster"].get("evidence")),
            )
        )
    stories = []
    for story_id, members in groups.items():
        members.sort(key=lambda m: (m.seen_at, m.article_id))
        stories.append(Story(story_id, _first_title(members), tuple(members), len(members), ()))
    return _ordered(stories)


def _first_title(members: Iterable[Member]) -> str | None:
    return next((member.title for member in members if member.title), None)


def _ordered(stories: list[Story]) -> list[Story]:
    """Most outlets first, then the earliest."""
    return sorted(stories, key=lambda s: (-s.member_count, s.members[0].seen_at if s.members else _EPOCH, s.story_id))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def stories_of(outputs: RunOutputs) -> list[Story]:
    """The story records' stories; articles that no story record lists (all of them
    when none were read) grouped by their clusters, so every article is shown."""
    stories = stories_from_records(outputs.stories, outputs.articles)
    listed = {member.article_id for story in stories for member in story.members}
    unlisted = [article for article in outputs.articles if article["article_id"] not in listed]
    return _ordered(stories + stories_from_clusters(unlisted, outputs.cluster_events))


# --- pieces of the page -----------------------------------------------------------------------------------------


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def merged_spans(passages: Iterable[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Passages clipped to the text, sorted, overlapping or touching ones joined, empty ones dropped."""
    spans: list[list[int]] = []
    for start, end in sorted((max(0, s), min(length, e)) for s, e in passages):
        if start >= end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


def highlighted(text: str, passages: Iterable[tuple[int, int]], shared_with: str | None = None) -> str:
    """The text, escaped, with the shared passages in <mark>."""
    hint = f' title="shared with {esc(shared_with)}"' if shared_with else ""
    out, position = [], 0
    for start, end in merged_spans(passages, len(text)):
        out.append(esc(text[position:start]))
        out.append(f"<mark{hint}>{esc(text[start:end])}</mark>")
        position = end
    out.append(esc(text[position:]))
    return "".join(out)


def format_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_delay(delay: dt.timedelta) -> str:
    minutes = int(delay.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"+{days} d {hours} h"
    if hours:
        return f"+{hours} h {minutes:02d} min"
    return f"+{minutes} min"


def safe_href(url: str | None) -> str | None:
    """Only web links: a `javascript:` or `data:` URL from a record must not become a link."""
    if url and url.lower().startswith(("http://", "https://")):
        return url
    return None


def outlet(member: Member) -> str:
    return member.source or member.article_id


_TIMELINE_WIDTH, _LABEL_WIDTH, _RIGHT_MARGIN, _ROW, _AXIS = 760, 190, 110, 22, 30


def timeline_svg(story: Story) -> str:
    """Which outlets ran the story and when: one row per member on a shared time axis."""
    members = story.members
    first, last = members[0].seen_at, max(m.seen_at for m in members)
    span = (last - first).total_seconds()
    plot = _TIMELINE_WIDTH - _LABEL_WIDTH - _RIGHT_MARGIN
    height = _AXIS + _ROW * len(members) + 8

    def x(moment: dt.datetime) -> float:
        share = (moment - first).total_seconds() / span if span else 0.5
        return round(_LABEL_WIDTH + share * plot, 1)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_TIMELINE_WIDTH} {height}" role="img" '
        f'aria-label="pickup timeline of {esc(story.title or story.story_id)}">'
    ]
    ticks = [first + (last - first) * i / 4 for i in range(5)] if span else [first]
    label = "%d %b %H:%M" if span < 4 * 86400 else "%d %b %Y"
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{x(tick)}" y1="{_AXIS - 8}" x2="{x(tick)}" y2="{height - 4}"/>')
        parts.append(
            f'<text class="tick" x="{x(tick)}" y="{_AXIS - 12}" text-anchor="middle">{esc(tick.strftime(label))}</text>'
        )
    for row, member in enumerate(members):
        y = _AXIS + _ROW * row + _ROW / 2
        when = format_time(member.seen_at) + ("" if member.published_at else " (arrival; no published_at)")
        delay = format_delay(member.seen_at - first) if row else "first"
        parts.append(
            f'<text class="outlet" x="{_LABEL_WIDTH - 10}" y="{y + 4}" text-anchor="end">'
            f"{esc(_shorten(outlet(member), 26))}</text>"
        )
        parts.append(f'<line class="delay" x1="{x(first)}" y1="{y}" x2="{x(member.seen_at)}" y2="{y}"/>')
        parts.append(
            f'<circle class="{"first" if row == 0 else "pickup"}" cx="{x(member.seen_at)}" cy="{y}" r="5">'
            f"<title>{esc(outlet(member))}: {esc(when)} ({esc(delay)})</title></circle>"
        )
        parts.append(f'<text class="delay-label" x="{x(member.seen_at) + 10}" y="{y + 4}">{esc(delay)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _match_label(member: Member, first: bool) -> str:
    if first:
        return "first to run it"
    return f"{member.match} {member.similarity:.2f}"


def member_card(member: Member, first: bool) -> str:
    href = safe_href(member.url)
    title = esc(member.title or "(no title)")
    heading = f'<a href="{esc(href)}" rel="noopener noreferrer">{title}</a>' if href else title
    shared = (
        f'<span class="badge" title="share of its text found in the story">shared {member.shared:.0%}</span>'
        if member.shared is not None and not first
        else ""
    )
    if member.text is None:
        body = '<p class="missing">text not among the outputs read</p>'
    else:
        body = f'<div class="text">{highlighted(member.text, member.passages, member.matched_id)}</div>'
    return (
        f'<section class="member" data-article-id="{esc(member.article_id)}">'
        f'<header><span class="outlet">{esc(outlet(member))}</span>'
        f"<time>{esc(format_time(member.seen_at))}</time>"
        f'<span class="badge lang">{esc(member.language)}</span>'
        f'<span class="badge match-{esc(member.match)}">{esc(_match_label(member, first))}</span>{shared}</header>'
        f"<h4>{heading}</h4>"
        f'<p class="id">{esc(member.article_id)}</p>'
        f"{body}</section>"
    )


def story_section(story: Story) -> str:
    members = story.members
    languages = sorted({m.language for m in members})
    outlets = sorted({outlet(m) for m in members})
    search = " ".join([story.title or "", *outlets, *languages, story.story_id]).lower()
    facts = [
        f"{story.member_count} articles from {len(outlets)} outlets",
        "languages " + ", ".join(languages),
        f"first {format_time(members[0].seen_at)}",
        f"last {format_time(max(m.seen_at for m in members))}",
        f"story {story.story_id}",
    ]
    if story.absorbed:
        facts.append("absorbed " + ", ".join(story.absorbed))
    listed_note = (
        f'<p class="note">showing the {len(members)} members listed of {story.member_count}</p>'
        if story.member_count > len(members)
        else ""
    )
    return (
        f'<article class="story" id="story-{esc(story.story_id)}" data-search="{esc(search)}">'
        f'<h3 class="story-title">{esc(story.title or "(no title)")}</h3>'
        f'<p class="facts">{" · ".join(esc(fact) for fact in facts)}</p>{listed_note}'
        f"<figure>{timeline_svg(story)}</figure>"
        f'<div class="members">{"".join(member_card(m, i == 0) for i, m in enumerate(members))}</div>'
        "</article>"
    )


def singles_table(stories: list[Story]) -> str:
    rows = []
    for story in sorted(stories, key=lambda s: s.members[0].seen_at, reverse=True):
        member = story.members[0]
        rows.append(
            f"<tr><td>{esc(member.title or '(no title)')}</td><td>{esc(outlet(member))}</td>"
            f"<td>{esc(member.language)}</td><td>{esc(format_time(member.seen_at))}</td></tr>"
        )
    return (
        "<table><thead><tr><th>title</th><th>outlet</th><th>language</th><th>published</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def bar_chart_svg(counts: list[tuple[str, int]], label: str) -> str:
    """Horizontal bars, one per (name, count), largest first as given."""
    width, name_width, count_width, row = 520, 70, 60, 20
    top = max((n for _, n in counts), default=1)
    parts = [f'<svg class="bars" viewBox="0 0 {width} {row * len(counts) + 4}" role="img" aria-label="{esc(label)}">']
    for index, (name, count) in enumerate(counts):
        y = index * row + 2
        bar = round((width - name_width - count_width) * count / top, 1)
        parts.append(
            f'<text x="{name_width - 8}" y="{y + 14}" text-anchor="end">{esc(name)}</text>'
            f'<rect x="{name_width}" y="{y + 2}" width="{bar}" height="{row - 6}"/>'
            f'<text x="{name_width + bar + 6}" y="{y + 14}">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def payload_start(letter: dict) -> str:
    """The beginning of a dead letter's original bytes as text; undecodable bytes and control characters as escapes."""
    try:
        payload = base64.b64decode(letter["payload"], validate=True)
    except (binascii.Error, ValueError):
        return "(payload is not base64)"
    text = payload.decode("utf-8", errors="backslashreplace")
    start = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}"
        for ch in text[:PAYLOAD_START_CHARS]
    )
    return start + ("…" if len(text) > PAYLOAD_START_CHARS else "")


def dead_letter_sections(dead_letters: list[dict]) -> str:
    if not dead_letters:
        return "<p>None: every record became an enriched article.</p>"
    by_reason: dict[str, list[dict]] = collections.defaultdict(list)
    for letter in dead_letters:
        by_reason[letter["reason"]].append(letter)
    out = []
    for reason, letters in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        rows = []
        for letter in sorted(letters, key=lambda d: (d["topic"], d["partition"], d["offset"])):
            size = letter.get("payload_bytes") if letter.get("payload_truncated") else None
            cut = f'<p class="note">payload cut; {size} bytes in all</p>' if size else ""
            rows.append(
                f"<tr><td>{esc(letter['topic'])}[{esc(letter['partition'])}]@{esc(letter['offset'])}</td>"
                f"<td>{esc(letter['stage'])}</td><td>{esc(letter['detail'])}</td>"
                f"<td><pre>{esc(payload_start(letter))}</pre>{cut}</td></tr>"
            )
        out.append(
            f'<h3 class="reason">{esc(reason)} ({len(letters)})</h3>'
            "<table><thead><tr><th>record</th><th>stage</th><th>detail</th><th>payload (start)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(out)


def counts_table(caption: str, rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>" for name, value in rows)
    return f'<table class="counts"><caption>{esc(caption)}</caption><tbody>{body}</tbody></table>'


_STYLE = """
:root { --ink: #1d2430; --muted: #5b6576; --line: #d8dde6; --accent: #1f6feb; --mark: #ffe38a; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink);
       background: #f3f5f8; }
header.page, main { max-width: 1400px; margin: 0 auto; padding: 0 1.5rem; }
header.page { padding-top: 1.2rem; }
h1 { margin: 0; font-size: 1.6rem; }
h2 { margin: 2rem 0 .6rem; font-size: 1.3rem; border-bottom: 2px solid var(--line); padding-bottom: .2rem; }
.meta, .facts, .note, .id { color: var(--muted); font-size: .85rem; margin: .2rem 0; }
nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; }
.tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem;
        min-width: 9rem; }
.tile b { display: block; font-size: 1.5rem; }
.tile span { color: var(--muted); font-size: .85rem; }
#filter { width: 100%; max-width: 28rem; padding: .4rem .6rem; font: inherit; border: 1px solid var(--line);
          border-radius: 6px; }
.story { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.2rem;
         margin: 1rem 0 1.5rem; }
.story-title { margin: 0; font-size: 1.2rem; }
figure { margin: .6rem 0; }
svg.timeline { width: 100%; max-width: 760px; height: auto; font-size: 12px; }
svg .grid { stroke: var(--line); }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .outlet { fill: var(--ink); }
svg .delay { stroke: #9db8e6; stroke-width: 2; }
svg .delay-label { fill: var(--muted); font-size: 11px; }
svg circle.pickup { fill: var(--accent); }
svg circle.first { fill: #d1242f; }
.members { display: grid; grid-auto-flow: column; grid-auto-columns: minmax(19rem, 1fr); gap: .8rem;
           overflow-x: auto; padding-bottom: .4rem; }
.member { border: 1px solid var(--line); border-radius: 8px; padding: .6rem .7rem; background: #fbfcfe; min-width: 0; }
.member header { display: flex; flex-wrap: wrap; gap: .35rem; align-items: baseline; font-size: .82rem; }
.member .outlet { font-weight: 600; }
.member time { color: var(--muted); }
.member h4 { margin: .35rem 0 0; font-size: .98rem; line-height: 1.3; }
.member h4 a { color: inherit; }
.badge { border-radius: 4px; padding: 0 .35rem; background: #e8ecf3; font-size: .78rem; }
.badge.lang { background: #e4f1e7; }
.badge.match-new { background: #fde2e2; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24rem; overflow-y: auto; font-size: .86rem;
        line-height: 1.45; margin-top: .4rem; padding-right: .3rem; }
mark { background: var(--mark); color: inherit; }
.missing { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; background: var(--card); font-size: .86rem; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #eef1f6; }
.count-tables { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: flex-start; }
table.counts { width: auto; min-width: 18rem; }
table.counts caption { text-align: left; font-weight: 600; padding: .2rem 0; }
table.counts th { font-weight: normal; color: var(--muted); }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .8rem; max-width: 40rem; }
svg.bars { width: 100%; max-width: 520px; height: auto; font-size: 12px; }
svg.bars rect { fill: var(--accent); }
.reason { font-size: 1rem; margin: 1rem 0 .2rem; }
"""

# Filters the stories by words of their title, outlets, languages or id.
_SCRIPT = """
const filter = document.getElementById("filter");
const shown = document.getElementById("shown");
const stories = Array.from(document.querySelectorAll(".story"));
function applyFilter() {
  const words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let count = 0;
  for (const story of stories) {
    story.hidden = !words.every((word) => story.dataset.search.includes(word));
    count += story.hidden ? 0 : 1;
  }
  shown.textContent = count === stories.length ? "" : `showing ${count} of ${stories.length}`;
}
filter.addEventListener("input", applyFilter);
applyFilter();  // a filter the browser restored (going back to the page) applies at once
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def render(
    outputs: RunOutputs, metrics: Mapping[str, int] | None = None, generated_at: dt.datetime | None = None
) -> str:
    """The whole page. `metrics`: the run's Beam counters, when the caller ran it."""
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    stories = stories_of(outputs)
    syndicated = [s for s in stories if len(s.members) > 1]
    singles = [s for s in stories if len(s.members) == 1]
    languages = collections.Counter(a["language"]["code"] for a in outputs.articles).most_common()
    reasons = collections.Counter(d["reason"] for d in outputs.dead_letters).most_common()
    event_types = collections.Counter(e["type"] for e in outputs.cluster_events)
    copies = sum(len(s.members) for s in syndicated)
    tiles = [
        (len(outputs.articles), "enriched articles"),
        (len(syndicated), "stories with copies"),
        (copies, "articles in those stories"),
        (len(singles), "single articles"),
        (len(languages), "languages"),
        (len(outputs.dead_letters), "dead letters"),
    ]
    records = [
        ("enriched articles", len(outputs.articles)),
        ("dead letters", len(outputs.dead_letters)),
        *((f"dead letters: {reason}", n) for reason, n in reasons),
    ]
    story_counts = [
        ("stories", len(stories)),
        ("stories with copies", len(syndicated)),
        ("articles in stories with copies", copies),
        ("single articles", len(singles)),
        ("story records", len(outputs.stories)),
        *((f"cluster events: {kind}", n) for kind, n in sorted(event_types.items())),
    ]
    how = (
        "Most outlets first; each member beside the others, the passages it shares with the story "
        "<mark>highlighted</mark>."
        + (
            ""
            if outputs.stories
            else " No story records were read: the stories "
            "come from the articles' clusters and the merged cluster events."
        )
    )
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>wirecopy report: {len(syndicated)} stories with copies, {len(outputs.articles)} articles</title>",
            f"<style>{_STYLE}</style></head><body>",
            '<header class="page"><h1>wirecopy report</h1>',
            f'<p class="meta">read from {esc(outputs.origin)} · generated {esc(format_time(generated_at))}</p>',
            '<nav><a href="#stories">Stories</a><a href="#singles">Single articles</a>'
            '<a href="#languages">Languages</a>'
            '<a href="#dead-letters">Dead letters</a><a href="#counts">Counts</a></nav></header><main>',
            '<div class="tiles">',
            "".join(f'<div class="tile"><b>{n}</b><span>{esc(what)}</span></div>' for n, what in tiles),
            "</div>",
            f'<h2 id="stories">Stories with copies ({len(syndicated)})</h2>',
            f'<p class="note">{how}</p>',
            '<input id="filter" type="search" placeholder="filter by title, outlet, language"'
            ' aria-label="filter stories">'
            ' <span id="shown" class="note"></span>',
            "".join(story_section(story) for story in syndicated) or "<p>No story has more than one article.</p>",
            f'<h2 id="singles">Single articles ({len(singles)})</h2>',
            singles_table(singles) if singles else "<p>None.</p>",
            f'<h2 id="languages">Languages ({len(languages)})</h2>',
            bar_chart_svg(languages, "enriched articles per language") if languages else "<p>No articles.</p>",
            f'<h2 id="dead-letters">Dead letters ({len(outputs.dead_letters)})</h2>',
            dead_letter_sections(outputs.dead_letters),
            '<h2 id="counts">Counts</h2><div class="count-tables">',
            counts_table("records", records),
            counts_table("stories", story_counts),
            counts_table("Beam metrics of the run", sorted(metrics.items())) if metrics else "",
            "</div>",
            f"</main><script>{_SCRIPT}</script></body></html>\n",
        ]
    )
