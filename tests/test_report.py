"""`wirecopy report`: the page's pieces from records written here, then the
whole command after a real run, rendered by headless Chromium."""

import base64
import collections
import datetime as dt
import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import fastjsonschema
import orjson
import pytest

from wirecopy.pipelines import cli
from wirecopy.pipelines.local_broker import produce
from wirecopy.pipelines.outputs import RunOutputs, deduplicated, from_files, read_jsonl
from wirecopy.pipelines.report import (
    format_delay,
    highlighted,
    merged_spans,
    payload_start,
    render,
    safe_href,
    stories_from_clusters,
    stories_from_records,
    stories_of,
    timeline_svg,
)

REPO = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((REPO / "pipelines" / "samples" / "expected.json").read_text())
ARTIFACTS = REPO / "out" / "test-artifacts"
STORY_SCHEMA = fastjsonschema.compile(orjson.loads((REPO / "schemas" / "story.v1.json").read_bytes()))
GENERATED = dt.datetime(2026, 3, 12, 8, 0, tzinfo=dt.timezone.utc)


def article(
    article_id,
    text,
    *,
    cluster="c-1",
    title=None,
    source=None,
    published_at=None,
    language="en",
    url=None,
    match="new",
    similarity=1.0,
    evidence=None,
):
    record = {
        "schema_version": 1,
        "article_id": article_id,
        "url": url,
        "canonical_url": url,
        "source": source,
        "title": title,
        "byline": None,
        "text": text,
        "word_count": len(text.split()),
        "boilerplate_removed": {},
        "language": {"code": language, "confidence": 0.99},
        "cluster": {"id": cluster, "canonical_id": article_id, "similarity": similarity, "match": match},
        "published_at": published_at,
        "processed_at": "2026-03-12T07:00:00.000Z",
        "ingest": {"topic": "articles.raw", "partition": 0, "offset": 0},
    }
    if evidence:
        record["cluster"]["evidence"] = evidence
    return record


def member(article_id, *, joined_at, match="near", similarity=0.9, passages=(), matched_id="a", **fields):
    entry = {"article_id": article_id, "match": match, "similarity": similarity, "joined_at": joined_at, **fields}
    if passages:
        entry["evidence"] = {"matched_id": matched_id, "shared": 0.5, "passages": [list(p) for p in passages]}
    return entry


def story(story_id, members, *, status="active", absorbed_into=None, absorbed=(), title=None, member_count=None):
    record = {
        "schema_version": 1,
        "story_id": story_id,
        "status": status,
        "absorbed_into": absorbed_into,
        "absorbed": list(absorbed),
        "canonical_id": members[0]["article_id"],
        "title": title,
        "first_seen": members[0]["joined_at"],
        "last_seen": members[-1]["joined_at"],
        "member_count": member_count or len(members),
        "members": members,
        "updated_at": members[-1]["joined_at"],
    }
    STORY_SCHEMA(record)  # the fixture is what the story topic carries
    return record


def dead_letter(offset, reason, payload: bytes, **fields):
    return {
        "schema_version": 1,
        "reason": reason,
        "detail": f"{reason} detail",
        "stage": "decode",
        "payload": base64.b64encode(payload).decode(),
        "topic": "articles.raw",
        "partition": 0,
        "offset": offset,
        "failed_at": "2026-03-12T07:00:00.000Z",
        **fields,
    }


# --- passages --------------------------------------------------------------------------------------------------------


def test_passages_are_clipped_sorted_and_joined():
    assert merged_spans([(30, 40), (0, 5), (3, 8), (8, 10), (12, 12), (45, 99)], length=50) == [
        (0, 10),
        (30, 40),
        (45, 50),
    ]
    assert merged_spans([(60, 70)], length=50) == []


def test_highlighted_marks_exactly_the_passages_and_escapes_the_text():
    text = "Ministers <agree> on one ticket & more"
    page = highlighted(text, [(10, 17), (32, 33)], shared_with="x")
    assert page == (
        'Ministers <mark title="shared with x">&lt;agree&gt;</mark> on one ticket '
        '<mark title="shared with x">&amp;</mark> more'
    )


def test_highlighted_offsets_count_characters_not_bytes():
    text = "Грузовик «Байкал» пришёл"
    start = text.index("Байкал")
    marked = "Грузовик «<mark>Байкал</mark>» пришёл"
    assert highlighted(text, [(start, start + len("Байкал"))]) == marked


# --- stories ---------------------------------------------------------------------------------------------------------


def test_an_absorbed_story_shows_its_members_under_the_story_that_absorbed_it():
    articles = [article("a", "first text", title="A"), article("b", "second text"), article("c", "third")]
    records = [
        story(
            "s-1",
            [
                member("a", joined_at="2026-03-10T10:00:00Z", match="new", source="wire.example"),
                member("b", joined_at="2026-03-10T12:00:00Z", passages=[(0, 6)]),
            ],
            absorbed=["s-2"],
            title="One ticket",
        ),
        story(
            "s-2",
            [member("c", joined_at="2026-03-10T11:00:00Z", match="new"), member("d", joined_at="2026-03-10T13:00:00Z")],
            status="absorbed",
            absorbed_into="s-1",
        ),
        story("s-3", [member("e", joined_at="2026-03-09T09:00:00Z", match="new")]),
    ]
    stories = stories_from_records(records, articles)
    assert [s.story_id for s in stories] == ["s-1", "s-3"]
    merged = stories[0]
    assert [m.article_id for m in merged.members] == ["a", "c", "b", "d"], "earliest first"
    assert merged.title == "One ticket" and merged.absorbed == ("s-2",) and merged.member_count == 4
    assert merged.members[2].passages == ((0, 6),) and merged.members[2].text == "second text"
    assert merged.members[3].text is None, "d is not among the enriched articles read"


def test_a_story_lists_at_most_its_first_members_and_says_how_many_there_are():
    records = [
        story(
            "s-1",
            [member("a", joined_at="2026-03-10T10:00:00Z", match="new"), member("b", joined_at="2026-03-10T11:00:00Z")],
            member_count=7,
        )
    ]
    (only,) = stories_from_records(records, [])
    assert only.member_count == 7 and len(only.members) == 2
    page = render(RunOutputs([], records, [], [], "test"), generated_at=GENERATED)
    assert "showing the 2 members listed of 7" in page


def test_without_story_records_stories_come_from_the_clusters_and_merged_events():
    articles = [
        article(
            "a",
            "a copy",
            cluster="c-1",
            published_at="2026-03-10T10:00:00.000Z",
            evidence={"matched_id": "b", "shared": 0.8, "passages": [[2, 6]]},
        ),
        article("b", "x", cluster="c-2", published_at="2026-03-10T09:00:00.000Z"),
        article("c", "x", cluster="c-3", published_at="2026-03-10T11:00:00.000Z"),
    ]
    events = [
        {"type": "created", "cluster_id": "c-1"},
        {"type": "created", "cluster_id": "c-2"},
        {"type": "merged", "cluster_id": "c-2", "from": "c-1", "into": "c-2"},
    ]
    stories = stories_from_clusters(articles, events)
    assert [[m.article_id for m in s.members] for s in stories] == [["b", "a"], ["c"]]
    copy = stories[0].members[1]
    assert (copy.passages, copy.shared, copy.matched_id) == (((2, 6),), 0.8, "b"), "the article's own evidence"
    assert stories_of(RunOutputs(articles, [], events, [], "test"))[0].story_id == "c-2"


def test_articles_no_story_record_lists_are_shown_by_their_clusters():
    articles = [article("a", "x", cluster="c-1"), article("b", "x", cluster="c-1"), article("c", "x", cluster="c-2")]
    records = [
        story(
            "s-1",
            [member("a", joined_at="2026-03-10T10:00:00Z", match="new"), member("b", joined_at="2026-03-10T11:00:00Z")],
        )
    ]
    assert [(s.story_id, len(s.members)) for s in stories_of(RunOutputs(articles, records, [], [], "test"))] == [
        ("s-1", 2),
        ("c-2", 1),
    ]


# --- timeline, dead letters, links -----------------------------------------------------------------------------------


def test_the_timeline_places_each_outlet_by_its_time():
    records = [
        story(
            "s-1",
            [
                member("a", joined_at="2026-03-10T10:00:00Z", match="new", source="wire.example"),
                member("b", joined_at="2026-03-10T12:30:00Z", source="blog.example"),
                member("c", joined_at="2026-03-11T10:00:00Z", source="<b>paper</b>"),
            ],
        )
    ]
    svg = timeline_svg(stories_from_records(records, [])[0])
    xs = [float(x) for x in re.findall(r'<circle class="\w+" cx="([\d.]+)"', svg)]
    assert len(xs) == 3 and xs[0] < xs[1] < xs[2]
    assert (xs[1] - xs[0]) / (xs[2] - xs[0]) == pytest.approx(2.5 / 24, abs=0.01), "a linear time axis"
    assert "+2 h 30 min" in svg and "+1 d 0 h" in svg and "&lt;b&gt;paper&lt;/b&gt;" in svg


def test_delays_read_as_a_person_says_them():
    assert [format_delay(dt.timedelta(minutes=m)) for m in (0, 42, 62, 25 * 60 + 5)] == [
        "+0 min",
        "+42 min",
        "+1 h 02 min",
        "+1 d 1 h",
    ]


def test_payload_start_shows_text_with_undecodable_bytes_and_control_characters_escaped():
    letter = dead_letter(1, "invalid_encoding", b'{"id": "x\xff", "t": "a\x00b"}' + b"y" * 400)
    start = payload_start(letter)
    head = '{"id": "x\\xff", "t": "a\x00b"}'  # 300 characters of the text shown, an undecodable byte as its escape
    assert start == head.replace("\x00", "\\x00") + "y" * (300 - len(head)) + "…"
    assert payload_start({"payload": "not base64!"}) == "(payload is not base64)"


def test_only_web_urls_become_links():
    assert safe_href("https://example.com/a") == "https://example.com/a"
    assert safe_href("javascript:alert(1)") is None and safe_href("data:text/html,x") is None
    assert safe_href(None) is None


def test_dead_letters_are_grouped_by_reason_most_first():
    letters = [
        dead_letter(3, "invalid_json", b"{"),
        dead_letter(1, "empty_text", b"{}"),
        dead_letter(2, "empty_text", b"{ }", payload_truncated=True, payload_bytes=2_000_000),
    ]
    page = render(RunOutputs([], [], [], letters, "test"), generated_at=GENERATED)
    assert page.index("empty_text (2)") < page.index("invalid_json (1)")
    assert page.index("articles.raw[0]@1") < page.index("articles.raw[0]@2")
    assert "payload cut; 2000000 bytes in all" in page


def test_a_consumer_keeps_the_last_record_per_key(tmp_path):
    enriched = tmp_path / "enriched.jsonl"
    enriched.write_bytes(
        b"\n".join(orjson.dumps(a) for a in [article("a", "old"), article("b", "b"), article("a", "redelivered")])
        + b"\n"
    )
    read = from_files(enriched, None, None, None)
    assert [(a["article_id"], a["text"]) for a in read.articles] == [("a", "redelivered"), ("b", "b")]


# --- the page is safe ------------------------------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


def test_text_from_the_records_cannot_add_elements_or_scripts():
    articles = [
        article(
            "a",
            HOSTILE,
            title=HOSTILE,
            source=HOSTILE,
            url="javascript:alert(1)",
            published_at="2026-03-10T10:00:00.000Z",
            language="en",
        ),
        article(
            "b",
            HOSTILE + " copy",
            title="b",
            url='https://x.example/"onmouseover="alert(1)',
            published_at="2026-03-10T11:00:00.000Z",
        ),
    ]
    records = [
        story(
            HOSTILE,
            [
                member(
                    "a",
                    joined_at="2026-03-10T10:00:00Z",
                    match="new",
                    title=HOSTILE,
                    source=HOSTILE,
                    url="javascript:alert(1)",
                ),
                member(
                    "b",
                    joined_at="2026-03-10T11:00:00Z",
                    passages=[(0, 8)],
                    matched_id=HOSTILE,
                    url='https://x.example/"onmouseover="alert(1)',
                ),
            ],
            title=HOSTILE,
        )
    ]
    letters = [dead_letter(1, "invalid_json", HOSTILE.encode(), detail=HOSTILE, topic=HOSTILE)]
    page = render(
        deduplicated(articles, records, [], letters, origin=HOSTILE), metrics={HOSTILE: 1}, generated_at=GENERATED
    )
    parser = _Elements()
    parser.feed(page)
    tags = [tag for tag, _ in parser.tags]
    assert tags.count("script") == 1 and "img" not in tags
    assert not [attrs for _, attrs in parser.tags if any(name.startswith("on") for name in attrs)]
    links = [attrs["href"] for tag, attrs in parser.tags if tag == "a" and not attrs["href"].startswith("#")]
    assert links == ['https://x.example/"onmouseover="alert(1)'], "the web link stays one attribute; no javascript:"
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 8


def test_the_page_allows_nothing_but_its_own_style_and_script():
    page = render(RunOutputs([], [], [], [], "test"), generated_at=GENERATED)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)[1]
    assert csp.startswith("default-src &#x27;none&#x27;;") and "unsafe-inline" not in csp
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing loaded from elsewhere"


# --- the command, after a real run, in a real browser ----------------------------------------------------------------


def wirecopy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def open_in_chromium(page: Path, screenshot: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's script ran, and every console message (a script
    error, a CSP violation, a log line: the page itself logs nothing)."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian's chromium package)")
    finished = subprocess.run(
        # --no-sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,2400",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout, [line for line in finished.stderr.splitlines() if ":CONSOLE" in line]


def test_the_browser_check_sees_script_errors_and_blocked_loads(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src "
        "'none'; script-src 'unsafe-inline'\"></head><body><h1>visible</h1>"
        "<img src='https://example.com/x.png'><script>null.x</script></body></html>"
    )
    dom, console = open_in_chromium(page, tmp_path / "broken.png", tmp_path / "profile")
    assert "<h1>visible</h1>" in dom
    assert len(console) == 2 and "Uncaught TypeError" in " ".join(console) and "example.com" in " ".join(console)


def expected_story_titles(articles: list[dict]) -> set[str]:
    """The title of each ground-truth story's earliest article: what its story shows."""
    by_id = {a["article_id"]: a for a in articles}
    return {min((by_id[i] for i in ids), key=lambda a: a["published_at"])["title"] for ids in EXPECTED["clusters"]}


def test_report_of_a_sample_run_shows_its_stories_in_a_browser(sample_run, tmp_path, capsys):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, screenshot = ARTIFACTS / "report.html", ARTIFACTS / "report.png"
    articles = read_jsonl(sample_run)
    finished = wirecopy("report", "--output-jsonl", sample_run, "--html", page)  # and the run's sibling files
    assert finished.returncode == 0, finished.stderr[-3000:]
    dead = collections.Counter(EXPECTED["dead_letters"].values())
    assert (
        f"{len(EXPECTED['clusters'])} stories with copies, {len(articles)} enriched articles, "
        f"{dead.total()} dead letters"
    ) in finished.stdout

    dom, console = open_in_chromium(page, screenshot, tmp_path / "profile")
    with capsys.disabled():  # shown whether the test passes or not: the artifact to look at
        print(f"\nreport screenshot: {screenshot} (page: {page})")
    assert console == []
    shown_titles = {html.unescape(title) for title in re.findall(r'<h3 class="story-title">(.*?)</h3>', dom)}
    assert shown_titles == expected_story_titles(articles)
    for reason, count in dead.items():
        assert f'<h3 class="reason">{reason} ({count})</h3>' in dom
    assert re.findall(r'<circle class="(?:first|pickup)"', dom), "pickup timelines drawn"
    passages = {
        member["article_id"]: member["evidence"]["passages"]
        for record in read_jsonl(sample_run.with_name("enriched.stories.jsonl"))
        for member in record["members"]
        if "evidence" in member
    }
    text_of = {a["article_id"]: a["text"] for a in articles}
    cards = re.findall(r'<section class="member" data-article-id="([^"]+)">(.*?)</section>', dom, re.S)
    assert len(cards) == sum(len(ids) for ids in EXPECTED["clusters"])
    for article_id, card in cards:
        marked = [html.unescape(text) for text in re.findall(r"<mark[^>]*>(.*?)</mark>", card, re.S)]
        text = text_of[article_id]
        assert marked == [text[start:end] for start, end in merged_spans(passages.get(article_id, ()), len(text))]
    assert sum(len(passages.get(article_id, ())) > 0 for article_id, _ in cards) >= len(EXPECTED["clusters"]), (
        "every story shows at least one copy's shared passages"
    )
    assert screenshot.stat().st_size > 50_000, "a screenshot with content (an empty page is ~5 kB)"

    filtered = tmp_path / "filtered.html"  # as if a person had typed in the filter box
    filtered.write_text(page.read_text().replace('<input id="filter"', '<input id="filter" value="GUADALQUIVIR"'))
    dom, console = open_in_chromium(filtered, tmp_path / "filtered.png", tmp_path / "profile")
    assert console == []
    visible = re.findall(r'<article class="story"(?![^>]*hidden)[^>]*>\s*<h3 class="story-title">(.*?)</h3>', dom)
    assert visible == ["La cuenca del Guadalquivir recorta un 30 % el agua para regadío por la sequía"]
    assert f"showing 1 of {len(EXPECTED['clusters'])}" in dom


@pytest.mark.broker
def test_report_from_topics_matches_the_files_and_ignores_redelivered_records(broker, topic_name, sample_run, tmp_path):
    topics = {kind: topic_name(kind) for kind in ("out", "stories", "clusters", "dead")}
    broker.create_topics(list(topics.values()))
    files = {
        "out": sample_run,
        "stories": sample_run.with_name("enriched.stories.jsonl"),
        "clusters": sample_run.with_name("enriched.clusters.jsonl"),
        "dead": sample_run.with_name("enriched.dead-letters.jsonl"),
    }
    for kind, path in files.items():
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        # At-least-once: a restart replays what followed the last commit, so the tail comes twice.
        produce(broker.bootstrap_servers, topics[kind], lines + lines[-3:])
    assert (
        report_in_process(
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--output-topic",
            topics["out"],
            "--story-topic",
            topics["stories"],
            "--cluster-topic",
            topics["clusters"],
            "--dead-letter-topic",
            topics["dead"],
            "--html",
            tmp_path / "from-kafka.html",
        )
        == 0
    )
    assert report_in_process("--output-jsonl", sample_run, "--html", tmp_path / "from-files.html") == 0

    def page_without_header(name: str) -> str:  # where it was read from and when differ
        return re.sub(r'<p class="meta">.*?</p>', "", (tmp_path / name).read_text())

    assert page_without_header("from-kafka.html") == page_without_header("from-files.html")


def report_in_process(*args) -> int:
    """`wirecopy report ARGS` in this process (no second Beam import: these tests are about reading and writing)."""
    parser = cli._parser()
    return cli.write_report(parser.parse_args(["report", *map(str, args)]), parser)


@pytest.mark.broker
def test_what_the_report_cannot_read_is_one_line_and_exit_2(broker, topic_name, tmp_path, caplog):
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(orjson.dumps(article("a", "x")) + b'\n{"article_id": \n')
    missing_topic = topic_name("never-created")
    for args, message in [
        (["--output-jsonl", tmp_path / "nowhere.jsonl"], "No such file or directory"),
        (["--output-jsonl", broken], f"{broken} line 2 is not JSON"),
        (
            ["--bootstrap-servers", broker.bootstrap_servers, "--output-topic", missing_topic],
            f"topics missing on {broker.bootstrap_servers}: {missing_topic}",
        ),
    ]:
        caplog.clear()
        assert report_in_process(*args, "--html", tmp_path / "report.html") == 2
        said = [record.getMessage() for record in caplog.records if record.name == "wirecopy"]
        assert len(said) == 1 and said[0].startswith("cannot write the report: ") and message in said[0], said
        assert not (tmp_path / "report.html").exists()
