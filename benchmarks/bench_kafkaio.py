"""Kafka I/O benchmark: our Beam source and sink against raw kafka-python.

A script that prints figures, not a test (issue 4). It starts one local broker
(Tansu, memory storage), loads N synthetic ~2 KB JSON articles into a
3-partition topic and measures, in the same run and on the same broker:

  read   raw KafkaConsumer (assign all partitions, seek to beginning, poll
         until N records), both with kafka-python's default of 500 records
         per poll and with our reader's 5,000, vs `ReadFromKafka` (bounded,
         fresh group id) into a counting DoFn on the local runner
         (FnApiRunner); ours is compared with the faster raw variant;
  write  raw KafkaProducer with our sink's settings (send N + flush) vs
         `WriteToKafka` fed by a generator DoFn, minus the same pipeline with
         the sink replaced by a counting DoFn (so generating the messages and
         running the pipeline are not charged to the sink). Like for like,
         the raw producer is also fed messages made one by one, minus making
         them: sending from a prebuilt list is ~20-30 % cheaper, because the
         producer's batch buffer then grows in place with no allocation in
         between (shown too, for context).

Each measurement reports wall time and this process's CPU time. The machine
is shared and small, so absolute figures are noisy: the ratios measured in the
same run are what counts. The goal is ours / raw >= 0.8.

    .venv/bin/python benchmarks/bench_kafkaio.py                  # 100,000 records, 5 repeats
    .venv/bin/python benchmarks/bench_kafkaio.py --records 20000  # quick run
    .venv/bin/python benchmarks/bench_kafkaio.py --profile        # plus a cProfile of the Beam read
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as dt
import io
import logging
import os
import platform
import pstats
import random
import shlex
import statistics
import sys
import time
import uuid
from typing import Callable, Iterator

import apache_beam as beam
import kafka
import orjson
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from wirecopy.pipelines.local_broker import LocalBroker
from wirecopy.transforms.kafkaio import KafkaMessage, KafkaReadSpec, ReadFromKafka, WriteToKafka, high_watermarks

PARTITIONS = 3
# Our sink's producer settings (transforms/kafkaio/write.py, _WriteFn._new_producer):
# the raw producer uses the same, so the comparison is of the code, not the config.
SINK_PRODUCER_SETTINGS = {"acks": "all", "enable_idempotence": True, "linger_ms": 20, "batch_size": 256 * 1024}
# Records per poll: kafka-python's default, and our reader's most (transforms/kafkaio/read.py, _MAX_POLL_RECORDS).
RAW_POLL_SIZES = {"raw": 500, "raw5000": 5000}
METRICS_NAMESPACE = "bench"


# ----------------------------------------------------------------- payloads
# Synthetic news articles: made-up vocabulary and sentence templates, so the
# payloads look like the real input (JSON with a ~1.7 KB body) without copying
# any text. Bodies come from a fixed pool; every record has its own id, url
# and time, like distinct articles would.

_PLACES = (
    "Northport",
    "Valmere",
    "Ostrava Bay",
    "Kestrel County",
    "the capital",
    "Lindenfeld",
    "Port Arlen",
    "the northern provinces",
    "Sunward Valley",
    "Marisco",
)
_ACTORS = (
    "The transport ministry",
    "City council members",
    "A coalition of farmers",
    "The central bank",
    "Regional health officials",
    "The port authority",
    "Union representatives",
    "A panel of engineers",
    "The energy regulator",
    "School governors",
)
_VERBS = ("approved", "rejected", "postponed", "announced", "criticised", "expanded", "reviewed", "proposed")
_OBJECTS = (
    "a plan to rebuild the river crossing",
    "new limits on night flights",
    "a budget for rural clinics",
    "higher fees for freight trains",
    "a pilot scheme for electric buses",
    "the sale of the old shipyard",
    "a study of coastal flooding",
    "changes to the school calendar",
    "a tax on empty offices",
    "emergency funding for grain stores",
)
_WHEN = (
    "on Tuesday",
    "late on Friday",
    "after two days of talks",
    "this week",
    "earlier this month",
    "following a public consultation",
    "in a closed session",
    "ahead of the winter season",
)
_QUOTES = (
    "This is the most important decision we have taken in a decade",
    "We listened to residents and we changed the proposal",
    "The numbers simply did not add up",
    "Nobody should have to wait three years for a repair",
    "It is a first step, not the last one",
    "We expect the work to start before the end of the year",
)
_SPEAKERS = (
    "a spokesperson said",
    "the minister told reporters",
    "one delegate said",
    "the chair said in a statement",
    "a local resident said",
    "an official who asked not to be named said",
)
_FIGURES = ("{n} million euros", "{n} per cent", "{n} jobs", "{n} kilometres of track", "{n} households")


def _sentence(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f"{rng.choice(_ACTORS)} in {rng.choice(_PLACES)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
            f"{rng.choice(_WHEN)}."
        )
    if kind == 1:
        figure = rng.choice(_FIGURES).format(n=rng.randrange(2, 900))
        return (
            f"The measure is expected to affect about {figure} in {rng.choice(_PLACES)}, according to early estimates."
        )
    return f"\u201c{rng.choice(_QUOTES)},\u201d {rng.choice(_SPEAKERS)}."


def article_pool(size: int = 256, body_chars: int = 1700, seed: int = 4) -> list[tuple[str, str]]:
    """(title, body) pairs; deterministic, so every process builds the same pool."""
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        paragraphs, length = [], 0
        while length < body_chars:
            paragraph = " ".join(_sentence(rng) for _ in range(rng.randrange(2, 5)))
            paragraphs.append(paragraph)
            length += len(paragraph) + 2
        title = f"{rng.choice(_ACTORS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        pool.append((title, "\n\n".join(paragraphs)))
    return pool


def article(index: int, pool: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    """Record `index` as (key, value): the key is the article id, as producers key the input topic."""
    title, body = pool[(index * 7919) % len(pool)]
    article_id = f"bench-{index:08d}"
    published = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=37 * index)
    value = orjson.dumps(
        {
            "id": article_id,
            "url": f"https://news.example.org/{published:%Y/%m/%d}/{article_id}",
            "source": "news.example.org",
            "title": title,
            "text": body,
            "published_at": published.isoformat(),
            "language": "en",
        }
    )
    return article_id.encode(), value


class _GenerateMessages(beam.DoFn):
    """Emits the N benchmark articles as `KafkaMessage`s, from one impulse."""

    def __init__(self, topic: str, count: int):
        self._topic = topic
        self._count = count

    def setup(self):
        self._pool = article_pool()

    def process(self, _impulse) -> Iterator[KafkaMessage]:
        for index in range(self._count):
            key, value = article(index, self._pool)
            yield KafkaMessage(self._topic, key, value)


class _CountArrivals(beam.DoFn):
    """A trivial consumer: counts elements and notes when the first and the
    last arrived, as Beam metrics (the local runner runs the worker in this
    process, so perf_counter values are comparable with ours)."""

    def setup(self):
        self._elements = Metrics.counter(METRICS_NAMESPACE, "elements")
        self._first_us = Metrics.distribution(METRICS_NAMESPACE, "first_arrival_us")
        self._last_us = Metrics.distribution(METRICS_NAMESPACE, "last_arrival_us")

    def start_bundle(self):
        self._count = 0
        self._first_at = 0

    def process(self, _element):
        if not self._count:
            self._first_at = time.perf_counter_ns() // 1000
        self._count += 1

    def finish_bundle(self):
        if self._count:
            self._elements.inc(self._count)
            self._first_us.update(self._first_at)
            self._last_us.update(time.perf_counter_ns() // 1000)


# ----------------------------------------------------------------- measurements


@dataclasses.dataclass(frozen=True)
class Timing:
    """One measurement. `total_s`: wall clock, end to end. `cpu_s`: CPU time of
    this process (all its threads: client, runner; the broker is another
    process) over the same span, steadier than wall time on a busy machine.
    `steady_s` (reads): from the first record to the last."""

    total_s: float
    cpu_s: float
    steady_s: float | None = None


class Stopwatch:
    def __init__(self):
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self, steady_s: float | None = None) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu, steady_s)


def run_pipeline(build: Callable[[beam.Pipeline], None]) -> tuple[Timing, dict]:
    """Run a bounded pipeline on the local runner; its timing from run() to finish, and the bench metrics."""
    # Empty flags: PipelineOptions() would parse this script's own arguments.
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags=[]))
    build(pipeline)
    stopwatch = Stopwatch()
    result = pipeline.run()
    result.wait_until_finish()
    timing = stopwatch.stop()
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    metrics = {m.key.metric.name: m.committed for kind in ("counters", "distributions") for m in query[kind]}
    return timing, metrics


def arrivals(metrics: dict, expected: int) -> float:
    """Seconds from the first to the last record reaching `_CountArrivals`; checks the count."""
    if metrics.get("elements") != expected:
        raise RuntimeError(f"the pipeline counted {metrics.get('elements')} records, expected {expected}")
    return (metrics["last_arrival_us"].max - metrics["first_arrival_us"].min) / 1e6


def read_raw(bootstrap: str, topic: str, count: int, max_records: int) -> Timing:
    stopwatch = Stopwatch()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, n) for n in range(PARTITIONS)])
    consumer.seek_to_beginning()
    seen, first_at = 0, None
    while seen < count:
        for records in consumer.poll(timeout_ms=200, max_records=max_records).values():
            if first_at is None:
                first_at = time.perf_counter()
            # Visit every record, as the counting DoFn on our side does.
            for _record in records:
                seen += 1
    last_at = time.perf_counter()
    consumer.close()
    if seen != count:
        raise RuntimeError(f"raw read got {seen} records, expected {count}")
    return stopwatch.stop(steady_s=last_at - first_at)


def read_beam(bootstrap: str, topic: str, count: int) -> Timing:
    spec = KafkaReadSpec(bootstrap_servers=bootstrap, topic=topic, group_id=f"bench-{uuid.uuid4().hex[:12]}")
    timing, metrics = run_pipeline(lambda p: p | ReadFromKafka(spec) | beam.ParDo(_CountArrivals()))
    return dataclasses.replace(timing, steady_s=arrivals(metrics, count))


def write_raw(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> Timing:
    stopwatch = Stopwatch()
    producer = KafkaProducer(bootstrap_servers=bootstrap, **SINK_PRODUCER_SETTINGS)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return stopwatch.stop()


def write_raw_made_per_send(bootstrap: str, topic: str, count: int) -> Timing:
    """The raw producer fed as our sink is: each message made just before it is sent."""
    pool = article_pool()
    stopwatch = Stopwatch()
    producer = KafkaProducer(bootstrap_servers=bootstrap, **SINK_PRODUCER_SETTINGS)
    for index in range(count):
        key, value = article(index, pool)
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return stopwatch.stop()


def make_messages(count: int) -> Timing:
    """Making the messages alone: subtracted from `write_raw_made_per_send`."""
    pool = article_pool()
    stopwatch = Stopwatch()
    for index in range(count):
        article(index, pool)
    return stopwatch.stop()


def write_beam(bootstrap: str, topic: str, count: int) -> Timing:
    timing, _ = run_pipeline(
        lambda p: p | beam.Impulse() | beam.ParDo(_GenerateMessages(topic, count)) | WriteToKafka(bootstrap)
    )
    return timing


def generate_beam(topic: str, count: int) -> Timing:
    """The write pipeline with the sink replaced by a counter: its cost is not the sink's."""
    timing, metrics = run_pipeline(
        lambda p: p | beam.Impulse() | beam.ParDo(_GenerateMessages(topic, count)) | beam.ParDo(_CountArrivals())
    )
    arrivals(metrics, count)
    return timing


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return sum(high_watermarks(consumer, [TopicPartition(topic, n) for n in range(PARTITIONS)]).values())
    finally:
        consumer.close()


def profile_beam_read(bootstrap: str, topic: str, count: int) -> None:
    """cProfile of one Beam read; the local runner runs the bundles in this thread."""
    profiler = cProfile.Profile()
    profiler.enable()
    read_beam(bootstrap, topic, count)
    profiler.disable()
    for order, lines in (("cumulative", 25), ("tottime", 20)):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(lines)
        print(f"\n--- cProfile of the Beam read, sorted by {order} (top {lines}) ---")
        # Drop pstats' preamble (file and ordering lines), keep the header and table.
        print(out.getvalue()[out.getvalue().index("   ncalls") :].rstrip())


# ----------------------------------------------------------------- report


def row(
    label: str,
    seconds: list[float],
    count: int,
    payload_bytes: int,
    raw_seconds: list[float] | None = None,
    cpu: list[float] | None = None,
    raw_cpu: list[float] | None = None,
) -> str:
    """One table line: best and median seconds, throughput of the best, ours /
    raw throughput (best against best, median against median), and the same
    for CPU time (medians)."""
    best, median = min(seconds), statistics.median(seconds)
    line = f"  {label:<38} {best:>6.2f} {median:>6.2f} {count / best:>9,.0f} {payload_bytes / best / 1e6:>6.1f}"
    line += (
        f" {min(raw_seconds) / best:>6.2f} {statistics.median(raw_seconds) / median:>6.2f}" if raw_seconds else " " * 14
    )
    if cpu:
        line += f" {statistics.median(cpu):>7.2f}"
        if raw_cpu:
            line += f" {statistics.median(raw_cpu) / statistics.median(cpu):>6.2f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per measurement (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (at least 2; default 5)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one Beam read")
    args = parser.parse_args()
    if args.records < 1 or args.repeat < 2:
        parser.error("--records must be positive and --repeat at least 2")
    logging.basicConfig(level=logging.WARNING)
    # The raw consumers have no group on purpose, and kafka-python warns about
    # it every time; its network thread also warns whenever it waited for the
    # GIL, which on a busy 2-core machine is all the time. Errors still show.
    logging.getLogger("kafka.coordinator.consumer").setLevel(logging.ERROR)
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    count = args.records

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} cores, shared with other work (noisy): compare the ratios, which are "
        f"measured in the same run"
    )
    print(
        f"python {platform.python_version()}, apache-beam {beam.__version__}, kafka-python {kafka.__version__}, "
        f"broker Tansu (memory storage) on loopback"
    )

    pool = article_pool()
    messages = [article(index, pool) for index in range(count)]
    payload_bytes = sum(len(value) for _, value in messages)
    print(
        f"data: {count:,} records, {PARTITIONS} partitions, mean value {payload_bytes / count:,.0f} B, "
        f"{payload_bytes / 1e6:,.1f} MB of values; repeats: {args.repeat}"
    )

    read_timings: dict[str, list[Timing]] = {"raw": [], "raw5000": [], "beam": []}
    write_timings: dict[str, list[Timing]] = {"prebuilt": [], "raw": [], "make": [], "beam": [], "generate": []}
    with LocalBroker() as broker:
        bootstrap = broker.bootstrap_servers
        source = "bench.articles"
        broker.create_topics([source], partitions=PARTITIONS)
        write_raw(bootstrap, source, messages)
        if topic_size(bootstrap, source) != count:
            raise RuntimeError(f"loading {source} failed: it holds {topic_size(bootstrap, source)} records")

        # Raw and ours alternate, so a burst of load from other work on the
        # machine hits both sides rather than one.
        for rep in range(args.repeat):
            print(f"repeat {rep + 1}/{args.repeat}: read ...", end="", flush=True)
            for variant, max_records in RAW_POLL_SIZES.items():
                read_timings[variant].append(read_raw(bootstrap, source, count, max_records))
            read_timings["beam"].append(read_beam(bootstrap, source, count))
            print(" write ...", end="", flush=True)
            topics = [f"bench.write.{side}.{rep}" for side in ("prebuilt", "raw", "beam")]
            prebuilt_topic, raw_topic, beam_topic = topics
            broker.create_topics(topics, partitions=PARTITIONS)
            write_timings["prebuilt"].append(write_raw(bootstrap, prebuilt_topic, messages))
            write_timings["raw"].append(write_raw_made_per_send(bootstrap, raw_topic, count))
            write_timings["make"].append(make_messages(count))
            write_timings["beam"].append(write_beam(bootstrap, beam_topic, count))
            write_timings["generate"].append(generate_beam(beam_topic, count))
            for topic in topics:
                if topic_size(bootstrap, topic) != count:
                    raise RuntimeError(f"{topic} holds {topic_size(bootstrap, topic)} records, expected {count}")
            print(" done", flush=True)

        if args.profile:
            profile_beam_read(bootstrap, source, count)

    def column(timings: list[Timing], field: str) -> list[float]:
        return [getattr(timing, field) for timing in timings]

    beam_read = read_timings["beam"]
    # The goal is against the faster way of using kafka-python directly.
    fastest_raw = min(RAW_POLL_SIZES, key=lambda v: statistics.median(t.steady_s for t in read_timings[v]))
    raw_read = read_timings[fastest_raw]
    read_ratio = statistics.median(column(raw_read, "steady_s")) / statistics.median(column(beam_read, "steady_s"))
    prebuilt = write_timings["prebuilt"]

    def difference(minuend: str, subtrahend: str, field: str) -> list[float]:
        """Run by run (pairs from the same repeat): the cost of the sending alone."""
        return [
            getattr(m, field) - getattr(s, field) for m, s in zip(write_timings[minuend], write_timings[subtrahend])
        ]

    raw_seconds, raw_cpu = difference("raw", "make", "total_s"), difference("raw", "make", "cpu_s")
    sink_seconds, sink_cpu = difference("beam", "generate", "total_s"), difference("beam", "generate", "cpu_s")
    write_ratio = statistics.median(raw_seconds) / statistics.median(sink_seconds)

    print()
    print(f"  {'':<38} {'wall s':^13} {'throughput':^16} {'ours/raw':^13} {'CPU s':>7} {'CPU':>6}")
    print(
        f"  {'measurement (' + format(count, ',') + ' records)':<38} {'best':>6} {'median':>6} {'records/s':>9} "
        f"{'MB/s':>6} {'best':>6} {'median':>6} {'median':>7} {'o/r':>6}"
    )
    print("  read")
    for variant, max_records in RAW_POLL_SIZES.items():
        label = f"raw poll({max_records:,}/poll){' *' if variant == fastest_raw else ''}"
        print(
            row(
                f"{label}, end to end",
                column(read_timings[variant], "total_s"),
                count,
                payload_bytes,
                cpu=column(read_timings[variant], "cpu_s"),
            )
        )
        print(row(f"{label}, steady state", column(read_timings[variant], "steady_s"), count, payload_bytes))
    print(
        row(
            "ReadFromKafka, end to end",
            column(beam_read, "total_s"),
            count,
            payload_bytes,
            column(raw_read, "total_s"),
            column(beam_read, "cpu_s"),
            column(raw_read, "cpu_s"),
        )
    )
    print(
        row(
            "ReadFromKafka, steady state",
            column(beam_read, "steady_s"),
            count,
            payload_bytes,
            column(raw_read, "steady_s"),
        )
    )
    print("  write")
    print(
        row(
            "raw send + flush, prebuilt list",
            column(prebuilt, "total_s"),
            count,
            payload_bytes,
            cpu=column(prebuilt, "cpu_s"),
        )
    )
    print(
        row(
            "raw send + flush, made per send",
            column(write_timings["raw"], "total_s"),
            count,
            payload_bytes,
            cpu=column(write_timings["raw"], "cpu_s"),
        )
    )
    print(
        row(
            "making the messages (subtracted)",
            column(write_timings["make"], "total_s"),
            count,
            payload_bytes,
            cpu=column(write_timings["make"], "cpu_s"),
        )
    )
    print(row("raw KafkaProducer alone (difference) *", raw_seconds, count, payload_bytes, cpu=raw_cpu))
    print(
        row(
            "generate + WriteToKafka pipeline",
            column(write_timings["beam"], "total_s"),
            count,
            payload_bytes,
            cpu=column(write_timings["beam"], "cpu_s"),
        )
    )
    print(
        row(
            "generate-only pipeline (subtracted)",
            column(write_timings["generate"], "total_s"),
            count,
            payload_bytes,
            cpu=column(write_timings["generate"], "cpu_s"),
        )
    )
    if min(sink_seconds + sink_cpu + raw_seconds + raw_cpu) > 0:
        print(
            row("WriteToKafka alone (difference)", sink_seconds, count, payload_bytes, raw_seconds, sink_cpu, raw_cpu)
        )
        print(
            row(
                "  the same, against the prebuilt list",
                sink_seconds,
                count,
                payload_bytes,
                column(prebuilt, "total_s"),
                sink_cpu,
                column(prebuilt, "cpu_s"),
            )
        )
    else:
        print(f"  {'WriteToKafka alone (difference)':<38} within the noise at this size: use more --records")
    print()
    print("ours/raw = our throughput / raw throughput (best vs best, median vs median); goal >= 0.8.")
    print("  read: against the raw variant marked *, the faster of the two (by median steady state);")
    print("  write: against the raw producer marked *, fed like ours (messages made one by one, making subtracted).")
    print("throughput: of the best run. CPU s: this process's CPU time (all threads; not the broker's), steadier")
    print("  than wall time on a busy machine; CPU o/r = raw CPU / our CPU, the CPU-bound throughput ratio.")
    print("end to end: read from consumer creation (raw) or pipeline.run() (ours) to the last record and close;")
    print("  includes client start-up, metadata, the read plan (high watermarks) and the runner's bundles.")
    print("steady state: from the first record reaching the counting loop/DoFn to the last one.")
    print("write: raw = producer creation, send N, flush, close; ours = write pipeline minus generate-only pipeline;")
    print("  the local runner runs the generator and the sink as one bundle: raw sends all N before one flush, ours")
    print("  flushes whenever 4 MiB are unacknowledged (it keeps each message until acknowledged, to resend it).")
    print(f"\nread ratio (steady state, median) {read_ratio:.2f}; write ratio (median) {write_ratio:.2f}; goal >= 0.8")
    if read_ratio < 0.8 and not args.profile:
        print("read below the goal: run with --profile for a cProfile of the Beam read.")


if __name__ == "__main__":
    main()
