"""`wirecopy demo`: the whole product on a laptop in one command.

Starts the embedded broker on a free loopback port, creates the topics,
produces the bundled sample articles, runs the pipeline (bounded) on the local
runner, reads the output topics back and prints what came out: the stories as the
compacted story topic has them.
"""

from __future__ import annotations

import base64
import collections
import importlib.resources
import logging
from pathlib import Path

import orjson

from wirecopy.pipelines.enrich import KafkaIO, RunConfig, RunResult, run
from wirecopy.pipelines.local_broker import LocalBroker, produce, read_topic
from wirecopy.pipelines.outputs import deduplicated
from wirecopy.pipelines.report import render
from wirecopy.transforms.kafkaio import KafkaReadSpec
from wirecopy.transforms.stories import StoryTable

_LOG = logging.getLogger(__name__)

INPUT_TOPIC = "articles.raw"
OUTPUT_TOPIC = "articles.enriched"
CLUSTER_TOPIC = "articles.clusters"
DEAD_LETTER_TOPIC = "articles.dead-letters"
STORY_TOPIC = "articles.stories"
REPORT_PATH = "wirecopy-report.html"  # in the current directory, as `wirecopy report` writes it


def sample_lines() -> list[bytes]:
    data = importlib.resources.files("wirecopy.pipelines.samples").joinpath("articles.jsonl").read_bytes()
    return [line for line in data.split(b"\n") if line.strip()]


def run_demo(show_text: bool = False) -> int:
    lines = sample_lines()
    with LocalBroker() as broker:
        broker.create_topics([INPUT_TOPIC], partitions=3)
        broker.create_topics([OUTPUT_TOPIC, CLUSTER_TOPIC, DEAD_LETTER_TOPIC])
        broker.create_topics([STORY_TOPIC], configs={"cleanup.policy": "compact"})
        produce(broker.bootstrap_servers, INPUT_TOPIC, lines)
        _LOG.info("produced %d sample records to %s on %s", len(lines), INPUT_TOPIC, broker.bootstrap_servers)
        io = KafkaIO(
            KafkaReadSpec(broker.bootstrap_servers, INPUT_TOPIC, group_id="wirecopy-demo"),
            OUTPUT_TOPIC,
            CLUSTER_TOPIC,
            DEAD_LETTER_TOPIC,
            story_topic=STORY_TOPIC,
        )
        result = run(RunConfig(io=io))
        articles = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, OUTPUT_TOPIC)]
        table = StoryTable()
        for record in read_topic(broker.bootstrap_servers, STORY_TOPIC):
            table.apply(orjson.loads(record.value))
        dead_letters = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, DEAD_LETTER_TOPIC)]
    print(summary(len(lines), result, articles, table, dead_letters, show_text))
    page = Path(REPORT_PATH)
    outputs = deduplicated(articles, list(table.records.values()), [], dead_letters, origin="the demo's output topics")
    page.write_text(render(outputs, metrics=result.counters), encoding="utf-8")
    print(f"The same as a page: {page.resolve()} (open it in a browser)\n")
    produced_everything = len(articles) + len(dead_letters) >= len(lines)
    return 0 if result.state.endswith("DONE") and produced_everything else 1


def summary(
    produced: int,
    result: RunResult,
    articles: list[dict],
    table: StoryTable,
    dead_letters: list[dict],
    show_text: bool = False,
) -> str:
    """A readable report of one run: the stories from the story topic with their members, dead letters, counts."""
    texts = {article["article_id"]: article["text"] for article in articles}
    grouped = table.stories()
    syndicated = {story_id: members for story_id, members in grouped.items() if len(members) > 1}
    out = [
        "",
        f"wirecopy demo: {produced} sample records through the pipeline on {result.runner} "
        f"({result.state}, {result.seconds:.1f} s)",
        "",
        f"Stories with copies ({len(syndicated)}), read from the story topic, earliest member first; per member: "
        "how it matched, its similarity, the share of its text found in the story and its longest shared passage",
    ]
    for story_id, members in sorted(syndicated.items(), key=lambda item: (-len(item[1]), item[0])):
        members = sorted(members, key=lambda m: (m.get("published_at") or m["joined_at"], m["article_id"]))
        absorbed = table.records[story_id]["absorbed"]
        out.append(
            f"  story {story_id}: {len(members)} articles" + (f" (absorbed {', '.join(absorbed)})" if absorbed else "")
        )
        for member in members:
            evidence = member.get("evidence")
            how = "founded" if member["match"] == "new" else f"{member['match']} {member['similarity']:.2f}"
            if evidence:
                how += f", {evidence['shared']:.0%} shared"
            out.append(
                f"    {member['article_id']:<34} [{member['language']}] {member['source'] or '-':<22} {how:<26} "
                f"{_shorten(member['title'] or '(no title)', 48)}"
            )
            if evidence and evidence["passages"] and member["article_id"] in texts:
                start, end = max(evidence["passages"], key=lambda span: span[1] - span[0])
                out.append(f"        “{_shorten(texts[member['article_id']][start:end], 100)}”")
            elif show_text and member["article_id"] in texts:
                out.append(f"        {_shorten(texts[member['article_id']], 110)}")
    singles = sorted(members[0]["article_id"] for members in grouped.values() if len(members) == 1)
    out += ["", f"Single-article stories ({len(singles)}): " + ", ".join(singles)]
    out += ["", f"Dead letters ({len(dead_letters)}):"]
    for letter in sorted(dead_letters, key=lambda d: (d["partition"], d["offset"])):
        payload = base64.b64decode(letter["payload"])
        out.append(
            f"    {letter['topic']}[{letter['partition']}]@{letter['offset']:<4} {letter['reason']:<18} "
            f"{_shorten(letter['detail'], 60)}  payload: {_shorten(repr(payload), 40)}"
        )
    languages = collections.Counter(a["language"]["code"] for a in articles)
    out += [
        "",
        "Counts:",
        f"    records read {result.counters.get(f'records_read.{INPUT_TOPIC}', 0)}, enriched articles written {len(articles)}, "
        f"dead letters {len(dead_letters)}",
        "    languages " + ", ".join(f"{code} {n}" for code, n in languages.most_common()),
        f"    stories {len(grouped)} ({len(syndicated)} with copies)",
        "    Beam metrics " + ", ".join(f"{name}={value}" for name, value in result.counters.items()),
        "",
    ]
    return "\n".join(out)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
