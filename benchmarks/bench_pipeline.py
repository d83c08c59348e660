"""The whole pipeline, Kafka to Kafka on the local runner, beside raw passthrough and the naive loop.

    .venv/bin/pip install -e '.[bench]'     # datasketch (the naive loop) and py-spy (the per-stage profile)
    .venv/bin/python benchmarks/bench_pipeline.py [--shared ../shared] [--bases-per-language 30] [--repeat 3]
        [--baseline REV]

The labelled set of `syndication_labelled.py` (real news in 17 languages from
`../shared/corpus`, wire stories with 2-5 syndicated copies each: truncated,
lead edited, retyped, regrouped, extended, wrapped in site chrome; and
same-topic different stories) is produced as raw articles to a 3-partition
topic on the local broker. Then, in turn, `--repeat` times each, every one
reading all of it from the start with its own consumer group and writing to
fresh topics:

- raw passthrough: a kafka-python `KafkaConsumer` polling every record and a
  `KafkaProducer` sending it on unchanged (the floor of any Kafka to Kafka job);
- the naive loop a user writes by hand: the same consumer, `langdetect` on the
  full text, a datasketch MinHash (128 permutations, word 5-shingles of the
  lower-cased text) queried against and then inserted into a `MinHashLSH`
  (threshold 0.5), the article with its language and cluster produced as JSON;
- `wirecopy run` (bounded; `pipelines.enrich.run`, the CLI's own entry);
- the Beam I/O floor: our Kafka read and sink with no stage between them;
- with `--baseline REV`, `wirecopy run` as of that git revision too (its
  tree extracted and imported first), so a change is measured side by side.

Prints wall and CPU seconds (this process, all threads), articles per second
and CPU ms per article for each (best and median of the repeats), and
wirecopy's ratios to the others. Then one more wirecopy run under py-spy
(sampling whichever thread holds the GIL, i.e. Python CPU time) gives the
per-stage table: CPU ms per article in each stage (its DoFns and what they
call, Beam's state API included), of which state access, state reads and
writes per article, and Beam's own share (the runner, moving elements between
DoFns, coders). Last, what a consumer of wirecopy's output topics gets:
clusters (each article's `cluster.id`, with the `merged` events applied as a
union-find) against the ground truth, ARI and pairwise precision/recall (the
naive loop's clusters beside), and language labels (English, French, German,
Swahili, Somali are known to langdetect; the other corpus languages should be
`und`).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
import orjson  # noqa: E402

from benchmarks.bench_syndication import UnionFind, scores  # noqa: E402
from benchmarks.pipeline_contenders import NAIVE_THRESHOLD  # noqa: E402
from benchmarks.syndication_labelled import build  # noqa: E402
from wirecopy.pipelines.enrich import KafkaIO  # noqa: E402
from wirecopy.pipelines.local_broker import LocalBroker, produce, read_topic  # noqa: E402
from wirecopy.transforms.kafkaio import KafkaReadSpec  # noqa: E402

PARTITIONS = 3
KNOWN_LANGUAGES = {"eng": "en", "fra": "fr", "deu": "de", "swa": "sw", "som": "so"}
# py-spy's sampling rate for the per-stage profile (samples per second of GIL time).
PROFILE_RATE = 250


def run_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of the process and the processes it waited for) of one run."""
    wall = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors = process.stderr.read()  # the log, read as it comes (a full pipe would block the process)
    # wait4 rather than wait: the rusage of this process alone.
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - wall
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{errors.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def contender(name: str, broker: LocalBroker, source: str, count: int, tag: str) -> list[str]:
    """The command line of one of `pipeline_contenders.py`'s contenders, with its own output topic and group."""
    broker.create_topics([f"{tag}.out"], partitions=PARTITIONS)
    return [
        sys.executable,
        "-m",
        "benchmarks.pipeline_contenders",
        name,
        broker.bootstrap_servers,
        source,
        f"{tag}.out",
        f"{tag}-group",
        str(count),
    ]


def wirecopy_args(broker: LocalBroker, source: str, tag: str) -> tuple[KafkaIO, list[str]]:
    """`wirecopy run`'s arguments: bounded, from the earliest offset, fresh output topics and group."""
    io = KafkaIO(
        KafkaReadSpec(broker.bootstrap_servers, source, group_id=f"{tag}-group"),
        output_topic=f"{tag}.enriched",
        cluster_topic=f"{tag}.clusters",
        dead_letter_topic=f"{tag}.dead",
    )
    broker.create_topics([io.output_topic, io.cluster_topic, io.dead_letter_topic], partitions=PARTITIONS)
    return io, [
        "--bootstrap-servers",
        io.bootstrap_servers,
        "--input-topic",
        source,
        "--output-topic",
        io.output_topic,
        "--cluster-topic",
        io.cluster_topic,
        "--dead-letter-topic",
        io.dead_letter_topic,
        "--group-id",
        io.read.group_id,
        "--start-from",
        "earliest",
    ]


def baseline_tree(revision: str, scratch: Path) -> dict[str, str]:
    """The environment that makes `python -m wirecopy...` import the package as of `revision`: its tree
    extracted under `scratch`, laid out as the installed package (`wirecopy.pipelines`, ...) first on the path."""
    tree = scratch / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    package = tree / "wirecopy"
    package.mkdir()
    (package / "__init__.py").touch()
    for folder in ("pipelines", "transforms", "schemas"):
        (package / folder).symlink_to(tree / folder)
    return {**os.environ, "PYTHONPATH": str(tree)}


# --- the per-stage profile -----------------------------------------------------------------------

# A sample belongs to the innermost frame of one of our modules (py-spy names frames `function (path:line)`),
# skipping the modules every stage calls (the stage harness, the record types).
_OUR_FRAME = re.compile(r"^(?P<function>\S+) \((?P<path>(?:transforms|schemas|pipelines)/(?:\w+/)?\w+\.py)")
_SHARED_MODULES = {"transforms/stage.py", "schemas/records.py"}
_MODULE_STAGES = {
    "transforms/language.py": "language",
    "transforms/language_detector.py": "language",
    "transforms/language_calibration.py": "language",
    "transforms/syndication.py": "syndication",
    "transforms/syndication_sketch.py": "syndication",
}
_DECODE_FUNCTIONS = ("_DecodeFn.", "decode_article", "decode_raw_article", "DecodeArticles")
_STATE_FRAMES = ("RuntimeState.", "StateCache.", "CachingStateHandler.", "FnApiUserStateContext.")
SETUP = "DoFn setup (once per run)"
STARTUP = "startup: imports, building, Kafka checks"
STAGE_ORDER = [
    STARTUP,
    SETUP,
    "Kafka read",
    "decode",
    "normalise",
    "language",
    "syndication",
    "encode",
    "Kafka write",
    "state writes at bundle end",
    "Beam: runner, element passing, coders",
    "Kafka client threads",
]


def stage_of(frames: list[str]) -> str:
    """The stage a sampled stack (outermost frame first) spends its time in."""
    if any(frame.startswith(("BundleProcessor.__init__", "DoFnRunner.setup")) for frame in frames):
        return SETUP
    for frame in reversed(frames):
        match = _OUR_FRAME.match(frame)
        if not match or match["path"] in _SHARED_MODULES:
            continue
        path, function = match["path"], match["function"]
        if path in ("pipelines/enrich.py", "pipelines/cli.py"):
            if function == "<lambda>":  # outcomes to Kafka messages, for the sink
                return "Kafka write"
            continue
        if path in _MODULE_STAGES:
            return _MODULE_STAGES[path]
        if path.startswith("transforms/normalise/"):
            return "normalise"
        if path.startswith("transforms/kafkaio/"):
            return "Kafka write" if path == "transforms/kafkaio/write.py" else "Kafka read"
        return "decode" if function.startswith(_DECODE_FUNCTIONS) else "encode"
    if frames[0].startswith("Thread._bootstrap"):
        return "Kafka client threads"
    if not any("FnApiRunner" in frame for frame in frames):
        return STARTUP
    if any(frame.startswith("FnApiUserStateContext.commit") for frame in frames):
        return "state writes at bundle end"
    return "Beam: runner, element passing, coders"


def read_samples(path: Path) -> Iterator[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            yield stack.split(";"), int(count)


def profile_run(broker: LocalBroker, source: str, tag: str, count: int) -> None:
    """One more `wirecopy run` process, under py-spy; prints the per-stage table."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("\nper-stage profile skipped: py-spy is not installed (pip install -e '.[bench]')")
        return
    _, run_args = wirecopy_args(broker, source, tag)
    with tempfile.TemporaryDirectory() as scratch:
        samples_path, counts_path = Path(scratch) / "samples.txt", Path(scratch) / "counts.json"
        wall, _ = run_process(
            [
                str(py_spy),
                "record",
                "--gil",
                "--rate",
                str(PROFILE_RATE),
                "--format",
                "raw",
                "--output",
                str(samples_path),
                "--",
                sys.executable,
                "-m",
                "benchmarks.pipeline_contenders",
                "wirecopy-counted",
                str(counts_path),
                *run_args,
            ]
        )
        counted = orjson.loads(counts_path.read_bytes())
        by_stage: collections.Counter = collections.Counter()
        state_by_stage: collections.Counter = collections.Counter()
        for frames, samples in read_samples(samples_path):
            stage = stage_of(frames)
            by_stage[stage] += samples
            if any(frame.startswith(_STATE_FRAMES) for frame in frames):
                state_by_stage[stage] += samples
    cpu = counted.pop("process_cpu_s")
    total = by_stage.total()
    ms_per_sample = cpu * 1000 / count / total
    state_stages = {
        "recent_articles": "normalise",
        "bucket": "syndication",
        "shard": "syndication",
        "announcements": "syndication",
    }
    accesses: collections.Counter = collections.Counter()
    for state_id, calls in counted.items():
        accesses[state_stages.get(state_id, state_id)] += calls
    print(
        f"\nWhere wirecopy's CPU goes (one more `wirecopy run` process under py-spy, sampling the GIL holder at "
        f"{PROFILE_RATE}/s: {wall:.1f} s wall, {cpu * 1000 / count:.2f} CPU ms per article, {total:,} samples; "
        f"a row's CPU is its share of the samples times the process's CPU)"
    )
    print(f"  {'stage':<42} {'CPU ms':>8} {'share':>6} {'of which':>9} {'state reads +':>14}")
    print(f"  {'':<42} {'/article':>8} {'':>6} {'state ms':>9} {'writes/article':>14}")
    for stage in STAGE_ORDER:
        if not by_stage[stage]:
            continue
        state = f"{state_by_stage[stage] * ms_per_sample:.2f}" if state_by_stage[stage] else ""
        access = f"{accesses[stage] / count:.1f}" if accesses[stage] else ""
        print(
            f"  {stage:<42} {by_stage[stage] * ms_per_sample:>8.2f} {by_stage[stage] / total:>6.1%} "
            f"{state:>9} {access:>14}"
        )
    print(
        "  state reads + writes per article, by state: "
        + ", ".join(f"{state_id} {calls / count:.1f}" for state_id, calls in sorted(counted.items()))
    )


# --- what a consumer gets ------------------------------------------------------------------------


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


def row(
    label: str, timings: list[tuple[float, float]], count: int, ours: list[tuple[float, float]] | None = None
) -> str:
    walls, cpus = [wall for wall, _ in timings], [cpu for _, cpu in timings]
    best, median = min(walls), statistics.median(walls)
    line = (
        f"  {label:<40} {best:>7.1f} {median:>7.1f} {count / best:>9,.0f} {count / median:>9,.0f} "
        f"{statistics.median(cpus) * 1000 / count:>8.2f}"
    )
    if ours:
        our_walls = [wall for wall, _ in ours]
        line += f" {best / min(our_walls):>8.2f} {median / statistics.median(our_walls):>7.2f}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--bases-per-language", type=int, default=30, help="wire stories per language (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--baseline", metavar="REV", help="also time `wirecopy run` as of this git revision")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    logging.getLogger("kafka").setLevel(logging.ERROR)

    labelled, _ = build(args.shared, bases_per_language=args.bases_per_language)
    values = [
        orjson.dumps({"id": item.article_id, "title": item.title, "text": item.text, "published_at": item.published_at})
        for item in labelled
    ]
    count = len(values)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} cores, shared with other work (noisy); local runner FnApiRunner, "
        f"apache-beam {beam.__version__}, broker Tansu (memory storage) on loopback"
    )
    print(
        f"data: {count:,} raw articles ({sum(map(len, values)) / count:,.0f} B mean), "
        f"{len({item.story for item in labelled}):,} stories, {len({item.language for item in labelled})} "
        f"languages, {PARTITIONS} partitions; repeats: {args.repeat}; each contender a process of its own, "
        f"startup included"
    )

    timings: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    scratch = tempfile.TemporaryDirectory()
    baseline_env = baseline_tree(args.baseline, Path(scratch.name)) if args.baseline else None
    with scratch, LocalBroker() as broker:
        source = "bench.raw"
        broker.create_topics([source], partitions=PARTITIONS)
        produce(broker.bootstrap_servers, source, values, [item.article_id.encode() for item in labelled])
        for rep in range(args.repeat):
            tag = f"bench-{uuid.uuid4().hex[:8]}"
            print(f"repeat {rep + 1}/{args.repeat}: raw passthrough ...", end="", flush=True)
            timings["raw"].append(run_process(contender("raw", broker, source, count, f"{tag}-raw")))
            print(" naive loop ...", end="", flush=True)
            timings["naive"].append(run_process(contender("naive", broker, source, count, f"{tag}-naive")))
            naive_topic = f"{tag}-naive.out"
            print(" wirecopy run ...", end="", flush=True)
            last_io, run_args = wirecopy_args(broker, source, tag)
            timings["wirecopy"].append(run_process([str(Path(sys.executable).with_name("wirecopy")), "run", *run_args]))
            if baseline_env:
                print(f" wirecopy run as of {args.baseline} ...", end="", flush=True)
                _, baseline_args = wirecopy_args(broker, source, f"{tag}-baseline")
                timings["baseline"].append(
                    run_process([sys.executable, "-m", "wirecopy.pipelines.cli", "run", *baseline_args], baseline_env)
                )
            print(" Beam I/O floor ...", end="", flush=True)
            timings["floor"].append(run_process(contender("floor", broker, source, count, f"{tag}-floor")))
            print(" done", flush=True)

        stages = [
            (wall - floor_wall, cpu - floor_cpu)
            for (wall, cpu), (floor_wall, floor_cpu) in zip(timings["wirecopy"], timings["floor"])
        ]
        ours = timings["wirecopy"]
        print(f"\n  {'':<40} {'wall s':>15} {'articles/s':>19} {'CPU ms':>8} {'wirecopy speed-up':>16}")
        print(
            f"  {'':<40} {'best':>7} {'median':>7} {'best':>9} {'median':>9} {'/article':>8} {'best':>8} {'median':>7}"
        )
        print(row("raw kafka-python passthrough", timings["raw"], count, ours))
        print(row("naive loop (langdetect + MinHashLSH)", timings["naive"], count, ours))
        print(row("wirecopy run (whole pipeline)", ours, count))
        if baseline_env:
            print(row(f"wirecopy run as of {args.baseline}"[:40], timings["baseline"], count, ours))
        print(row("Beam I/O floor (our read + sink only)", timings["floor"], count, ours))
        print(row("wirecopy's stages (paired difference)", stages, count))
        naive_walls, our_walls = [wall for wall, _ in timings["naive"]], [wall for wall, _ in ours]
        naive_cpu = statistics.median(cpu for _, cpu in timings["naive"])
        our_cpu = statistics.median(cpu for _, cpu in ours)
        print(
            f"\nwirecopy vs the naive loop, articles/s: {min(naive_walls) / min(our_walls):.2f}x best, "
            f"{statistics.median(naive_walls) / statistics.median(our_walls):.2f}x median; "
            f"CPU per article, the naive loop's over wirecopy's: {naive_cpu / our_cpu:.2f} (medians)"
        )

        profile_run(broker, source, f"bench-{uuid.uuid4().hex[:8]}-profiled", count)

        articles, stories = consumer_view(broker, last_io)
        dead_letters = len(read_topic(broker.bootstrap_servers, last_io.dead_letter_topic))
        naive_clusters = {}
        for record in read_topic(broker.bootstrap_servers, naive_topic):
            event = orjson.loads(record.value)
            naive_clusters[event["id"]] = event["cluster"]

    print(f"\nWhat a consumer gets (last timed run): {len(articles):,} enriched articles, {dead_letters} dead letters")
    truth = {item.article_id: item.story for item in labelled if item.article_id in articles}
    figures = scores(truth, {article_id: stories[article_id] for article_id in truth})
    print(
        f"  clusters (cluster.id + merged events): ARI {figures['ari']:.4f}  P {figures['precision']:.4f}  "
        f"R {figures['recall']:.4f}  clusters {figures['clusters']:,} for {len(set(truth.values())):,} stories"
    )
    naive_truth = {item.article_id: item.story for item in labelled if item.article_id in naive_clusters}
    naive_figures = scores(naive_truth, {article_id: naive_clusters[article_id] for article_id in naive_truth})
    print(
        f"  the naive loop's clusters (MinHashLSH {NAIVE_THRESHOLD}): ARI {naive_figures['ari']:.4f}  "
        f"P {naive_figures['precision']:.4f}  R {naive_figures['recall']:.4f}  "
        f"clusters {naive_figures['clusters']:,}"
    )
    by_language: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for item in labelled:
        if item.article_id in articles:
            by_language[item.language][articles[item.article_id]["language"]["code"]] += 1
    known = {
        lang: counts[KNOWN_LANGUAGES[lang]] / counts.total()
        for lang, counts in by_language.items()
        if lang in KNOWN_LANGUAGES
    }
    unknown = {
        lang: counts["und"] / counts.total() for lang, counts in by_language.items() if lang not in KNOWN_LANGUAGES
    }
    print(
        "  language, known to langdetect (share correct): "
        + ", ".join(f"{lang} {share:.1%}" for lang, share in sorted(known.items()))
    )
    print(
        "  language, unknown (share und; any other label is wrong): "
        + ", ".join(f"{lang} {share:.1%}" for lang, share in sorted(unknown.items()))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
