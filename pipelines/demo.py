"""`wirecopy demo`: the whole product on a laptop in one command.

Starts the embedded broker on a free loopback port, creates the topics,
produces the bundled sample articles, runs the pipeline (bounded) on the local
runner, reads the output topics back and prints what came out.
"""

from __future__ import annotations

import base64
import collections
import importlib.resources
import logging

import orjson

from wirecopy.pipelines.enrich import KafkaIO, RunConfig, RunResult, run
from wirecopy.pipelines.local_broker import LocalBroker, produce, read_topic

_LOG = logging.getLogger(__name__)

INPUT_TOPIC = "articles.raw"
OUTPUT_TOPIC = "articles.enriched"
CLUSTER_TOPIC = "articles.clusters"
DEAD_LETTER_TOPIC = "articles.dead-letters"


def sample_lines() -> list[bytes]:
    data = importlib.resources.files("wirecopy.pipelines.samples").joinpath("articles.jsonl").read_bytes()
    return [line for line in data.split(b"\n") if line.strip()]


def run_demo(show_text: bool = False) -> int:
    lines = sample_lines()
    with LocalBroker() as broker:
        broker.create_topics([INPUT_TOPIC], partitions=3)
        broker.create_topics([OUTPUT_TOPIC, CLUSTER_TOPIC, DEAD_LETTER_TOPIC])
        produce(broker.bootstrap_servers, INPUT_TOPIC, lines)
        _LOG.info("produced %d sample records to %s on %s", len(lines), INPUT_TOPIC, broker.bootstrap_servers)
        io = KafkaIO(broker.bootstrap_servers, INPUT_TOPIC, OUTPUT_TOPIC, CLUSTER_TOPIC, DEAD_LETTER_TOPIC,
                     group_id="wirecopy-demo")
        result = run(RunConfig(io=io))
        articles = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, OUTPUT_TOPIC)]
        cluster_events = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, CLUSTER_TOPIC)]
        dead_letters = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, DEAD_LETTER_TOPIC)]
    print(summary(len(lines), result, articles, cluster_events, dead_letters, show_text))
    produced_everything = len(articles) + len(dead_letters) >= len(lines)
    return 0 if result.state.endswith("DONE") and produced_everything else 1


def summary(produced: int, result: RunResult, articles: list[dict], cluster_events: list[dict],
            dead_letters: list[dict], show_text: bool = False) -> str:
    """A readable report of one run: clusters with their members, dead letters, counts."""
    story_of = stories(cluster_events)
    members = collections.defaultdict(list)
    for article in articles:
        members[story_of(article["cluster"]["id"])].append(article)
    syndicated = {cid: group for cid, group in members.items() if len(group) > 1}
    out = [
        "",
        f"wirecopy demo: {produced} sample records through the pipeline on {result.runner} "
        f"({result.state}, {result.seconds:.1f} s)",
        "",
        f"Syndicated clusters ({len(syndicated)}): each copy of one story, earliest first "
        "(clusters joined by `merged` events shown as one, as consumers see them)",
    ]
    for cluster_id, group in sorted(syndicated.items(), key=lambda item: -len(item[1])):
        group.sort(key=lambda a: (a["published_at"] or "", a["article_id"]))
        canonical_id = group[0]["article_id"]
        ids = sorted({a["cluster"]["id"] for a in group})
        out.append(f"  cluster {cluster_id}: {len(group)} articles" + (f" (merged from {', '.join(ids)})" if len(ids) > 1 else ""))
        for article in group:
            cluster = article["cluster"]
            match = "canonical" if article["article_id"] == canonical_id else f"{cluster['match']} {cluster['similarity']:.2f}"
            out.append(f"    {article['article_id']:<28} [{article['language']['code']}] {article['source'] or '-':<24} "
                       f"{match:<14} {_shorten(article['title'] or '(no title)', 60)}")
            if show_text:
                out.append(f"        {_shorten(article['text'], 110)}")
    singles = [group[0] for cid, group in members.items() if len(group) == 1]
    out += ["", f"Single-article clusters ({len(singles)}):"]
    for article in sorted(singles, key=lambda a: a["article_id"]):
        out.append(f"    {article['article_id']:<28} [{article['language']['code']}] {article['source'] or '-':<24} "
                   f"{_shorten(article['title'] or '(no title)', 60)}")
    out += ["", f"Dead letters ({len(dead_letters)}):"]
    for letter in sorted(dead_letters, key=lambda d: (d["partition"], d["offset"])):
        payload = base64.b64decode(letter["payload"])
        out.append(f"    {letter['topic']}[{letter['partition']}]@{letter['offset']:<4} {letter['reason']:<18} "
                   f"{_shorten(letter['detail'], 60)}  payload: {_shorten(repr(payload), 40)}")
    languages = collections.Counter(a["language"]["code"] for a in articles)
    event_types = collections.Counter(e["type"] for e in cluster_events)
    out += [
        "",
        "Counts:",
        f"    records read {result.counters.get(f'records_read.{INPUT_TOPIC}', 0)}, enriched articles written {len(articles)}, "
        f"dead letters {len(dead_letters)}",
        "    languages " + ", ".join(f"{code} {n}" for code, n in languages.most_common()),
        f"    stories {len(members)} ({len(syndicated)} with copies); cluster events "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(event_types.items())),
        "    Beam metrics " + ", ".join(f"{name}={value}" for name, value in result.counters.items()),
        "",
    ]
    return "\n".join(out)


def stories(cluster_events: list[dict]):
    """Cluster id → the id it ends up under once `merged` events are applied (union-find)."""
    into: dict[str, str] = {}

    def final(cluster_id: str) -> str:
        path = []
        while cluster_id in into:
            path.append(cluster_id)
            cluster_id = into[cluster_id]
        for step in path:
            into[step] = cluster_id
        return cluster_id

    for event in cluster_events:
        if event["type"] == "merged" and final(event["from"]) != final(event["into"]):
            into[final(event["from"])] = final(event["into"])
    return final


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
