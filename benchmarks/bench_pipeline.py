"""The whole pipeline, Kafka to Kafka on the local runner: speed, and quality as a consumer sees it.

    .venv/bin/python benchmarks/bench_pipeline.py [--shared ../shared] [--bases-per-language 30] [--repeat 3]

The labelled set of `syndication_labelled.py` (real news in 17 languages from
`../shared/corpus`, wire stories with 2-5 syndicated copies each: truncated,
lead edited, retyped, regrouped, extended, wrapped in site chrome; and
same-topic different stories) is produced as raw articles to a 3-partition
topic on the local broker. Then, alternately, `--repeat` times each:

- `wirecopy run` (bounded; `pipelines.enrich.run`, the CLI's own entry) with
  fresh output topics and consumer group;
- the I/O floor: the same read and the same sink with no stage between them
  (each record written as it was read).

Prints wall and CPU seconds (this process, all threads), articles per second
and CPU ms per article, for both and for the stages alone (the difference),
and what the consumer of the output topics gets from the last run: clusters
(each article's `cluster.id`, with the `merged` events of the cluster topic
applied as a union-find) against the ground truth, ARI and pairwise
precision/recall, and language labels (English, French, German, Swahili,
Somali are known to langdetect; the other corpus languages should be `und`).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
import orjson  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from benchmarks.bench_syndication import UnionFind, scores  # noqa: E402
from benchmarks.syndication_labelled import build  # noqa: E402
from wirecopy.pipelines.enrich import KafkaIO, RunConfig, run  # noqa: E402
from wirecopy.pipelines.local_broker import LocalBroker, produce, read_topic  # noqa: E402
from wirecopy.transforms.kafkaio import KafkaMessage, KafkaReadSpec, ReadFromKafka, StartPosition, WriteToKafka  # noqa: E402

PARTITIONS = 3
KNOWN_LANGUAGES = {"eng": "en", "fra": "fr", "deu": "de", "swa": "sw", "som": "so"}


def measure(work) -> tuple[float, float]:
    """Wall and CPU seconds of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_enrichment(broker: LocalBroker, source: str, tag: str) -> KafkaIO:
    io = KafkaIO(bootstrap_servers=broker.bootstrap_servers, input_topic=source,
                 output_topic=f"{tag}.enriched", cluster_topic=f"{tag}.clusters",
                 dead_letter_topic=f"{tag}.dead", group_id=f"{tag}-group", start_position=StartPosition.EARLIEST)
    broker.create_topics([io.output_topic, io.cluster_topic, io.dead_letter_topic], partitions=PARTITIONS)
    run(RunConfig(io))
    return io


def run_passthrough(broker: LocalBroker, source: str, tag: str) -> None:
    target = f"{tag}.copy"
    broker.create_topics([target], partitions=PARTITIONS)
    spec = KafkaReadSpec(bootstrap_servers=broker.bootstrap_servers, topic=source, group_id=f"{tag}-group",
                         start_position=StartPosition.EARLIEST)
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags=[])) as pipeline:
        (pipeline
         | ReadFromKafka(spec)
         | beam.Map(lambda record: KafkaMessage(target, record.key, record.value))
         | WriteToKafka(broker.bootstrap_servers))


def consumer_view(broker: LocalBroker, io: KafkaIO) -> tuple[dict[str, dict], dict[str, str]]:
    """The enriched articles by id, and each article's story (cluster with merged events applied)."""
    articles = {}
    for record in read_topic(broker.bootstrap_servers, io.output_topic):
        event = orjson.loads(record.value)
        articles[event["article_id"]] = event
    groups = UnionFind()
    for record in read_topic(broker.bootstrap_servers, io.cluster_topic):
        event = orjson.loads(record.value)
        if event["type"] == "merged":
            groups.union(event["from"], event["into"])
    return articles, {article_id: groups.find(event["cluster"]["id"]) for article_id, event in articles.items()}


def row(label: str, timings: list[tuple[float, float]], count: int) -> str:
    walls, cpus = [wall for wall, _ in timings], [cpu for _, cpu in timings]
    best, median = min(walls), statistics.median(walls)
    return (f"  {label:<34} {best:>7.1f} {median:>7.1f} {count / best:>10,.0f} {count / median:>10,.0f} "
            f"{statistics.median(cpus) * 1000 / count:>8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--bases-per-language", type=int, default=30, help="wire stories per language (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    # The I/O floor's reader fetches without a group, which kafka-python warns about each run.
    logging.getLogger("kafka").setLevel(logging.ERROR)

    labelled, _ = build(args.shared, bases_per_language=args.bases_per_language)
    values = [orjson.dumps({"id": item.article_id, "title": item.title, "text": item.text,
                            "published_at": item.published_at}) for item in labelled]
    count = len(values)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, shared with other work (noisy); local runner FnApiRunner, "
          f"apache-beam {beam.__version__}, broker Tansu (memory storage) on loopback")
    print(f"data: {count:,} raw articles ({sum(map(len, values)) / count:,.0f} B mean), "
          f"{len({item.story for item in labelled}):,} stories, {len({item.language for item in labelled})} "
          f"languages, {PARTITIONS} partitions; repeats: {args.repeat}")

    timings: dict[str, list[tuple[float, float]]] = {"pipeline": [], "floor": []}
    with LocalBroker() as broker:
        source = "bench.raw"
        broker.create_topics([source], partitions=PARTITIONS)
        produce(broker.bootstrap_servers, source, values, [item.article_id.encode() for item in labelled])
        last_io = None
        for rep in range(args.repeat):
            print(f"repeat {rep + 1}/{args.repeat}: pipeline ...", end="", flush=True)
            tag = f"bench-{uuid.uuid4().hex[:8]}"
            ios = []
            timings["pipeline"].append(measure(lambda: ios.append(run_enrichment(broker, source, tag))))
            last_io = ios[0]
            print(" I/O floor ...", end="", flush=True)
            timings["floor"].append(measure(lambda: run_passthrough(broker, source, tag + "-floor")))
            print(" done", flush=True)
        articles, stories = consumer_view(broker, last_io)
        dead_letters = len(read_topic(broker.bootstrap_servers, last_io.dead_letter_topic))

    stages = [(wall - floor_wall, cpu - floor_cpu)
              for (wall, cpu), (floor_wall, floor_cpu) in zip(timings["pipeline"], timings["floor"])]
    print(f"\n  {'':<34} {'wall s':>15} {'articles/s':>21} {'CPU ms':>8}")
    print(f"  {'':<34} {'best':>7} {'median':>7} {'best':>10} {'median':>10} {'/article':>8}")
    print(row("whole pipeline (wirecopy run)", timings["pipeline"], count))
    print(row("I/O floor (read + sink only)", timings["floor"], count))
    print(row("the stages (difference, paired)", stages, count))

    print(f"\nWhat a consumer gets (last run): {len(articles):,} enriched articles, {dead_letters} dead letters")
    truth = {item.article_id: item.story for item in labelled if item.article_id in articles}
    figures = scores(truth, {article_id: stories[article_id] for article_id in truth})
    print(f"  clusters (cluster.id + merged events): ARI {figures['ari']:.4f}  P {figures['precision']:.4f}  "
          f"R {figures['recall']:.4f}  clusters {figures['clusters']:,} for {len(set(truth.values())):,} stories")
    by_language: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for item in labelled:
        if item.article_id in articles:
            by_language[item.language][articles[item.article_id]["language"]["code"]] += 1
    known = {lang: counts[KNOWN_LANGUAGES[lang]] / counts.total() for lang, counts in by_language.items()
             if lang in KNOWN_LANGUAGES}
    unknown = {lang: counts["und"] / counts.total() for lang, counts in by_language.items()
               if lang not in KNOWN_LANGUAGES}
    print("  language, known to langdetect (share correct): "
          + ", ".join(f"{lang} {share:.1%}" for lang, share in sorted(known.items())))
    print("  language, unknown (share und; any other label is wrong): "
          + ", ".join(f"{lang} {share:.1%}" for lang, share in sorted(unknown.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
