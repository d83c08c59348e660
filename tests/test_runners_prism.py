"""End to end on Prism, the engine Beam's DirectRunner runs on a laptop: the same
articles, dead letters and stories as on the local runner (FnApiRunner).

Prism's binary comes from `deploy/prism.sh` (built once from the Go module
proxy, cached). Cluster *events* may differ between runners: Prism runs
bundles in parallel, so two copies may each open a cluster that a `merged`
event joins later; what a consumer ends up with (clusters after the merges) is
compared instead.
"""

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
import orjson
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirecopy.pipelines.demo import sample_lines
from wirecopy.pipelines.local_broker import committed_offsets, produce, read_topic
from test_stories import ORDER_DEPENDENT  # tests/ is on sys.path (pytest rootdir conftest)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "pipelines" / "samples" / "articles.jsonl"
# Differ from run to run by design: when the event was made.
_WALL_CLOCK_FIELDS = {"processed_at", "failed_at", "occurred_at"}

pytestmark = pytest.mark.prism


@pytest.fixture(scope="session")
def prism_location() -> str:
    built = subprocess.run(
        ["bash", str(REPO / "deploy" / "prism.sh"), sys.executable],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, f"Prism is missing and deploy/prism.sh (make runners) failed: {built.stderr[-500:]}"
    return built.stdout.strip()


def wirecopy(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_on_files(directory: Path, *runner_args: str) -> tuple[str, dict[str, list[dict]]]:
    directory.mkdir()
    finished = wirecopy("--input-jsonl", str(SAMPLES), "--output-jsonl", str(directory / "out.jsonl"), *runner_args)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stderr, outputs_beside(directory / "out.jsonl")


def outputs_beside(enriched: Path) -> dict[str, list[dict]]:
    """A file-mode run's enriched articles, cluster events and dead letters (the sibling files of `enriched`)."""
    return {
        kind: read_jsonl(enriched.with_name(f"{enriched.stem}{suffix}.jsonl"))
        for kind, suffix in (("articles", ""), ("clusters", ".clusters"), ("dead_letters", ".dead-letters"))
    }


def records_read(log_lines: list[str], topic: str) -> int:
    """How far the reader's progress lines (`TOPIC[P] at OFFSET`) say it has read, over all partitions."""
    positions = dict(re.findall(rf"{re.escape(topic)}\[(\d+)\] at (\d+)", "".join(log_lines)))
    return sum(int(offset) for offset in positions.values())


def outputs_written(broker, topics: dict[str, str]) -> int:
    """Enriched articles and dead letters in the output topics: one per input record."""
    return len(read_topic(broker.bootstrap_servers, topics["out"])) + len(
        read_topic(broker.bootstrap_servers, topics["dead"])
    )


@contextlib.contextmanager
def streaming_on_prism(kafka_arguments: list[str], prism_location: str, *more: str):
    """`wirecopy run ... --streaming` on Prism, started: (the process, its log lines as they come).
    Killed if still running when the block ends."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "wirecopy.pipelines.cli", "run", *kafka_arguments, "--streaming", *more),
            *("--runner", "PrismRunner", "--prism_location", prism_location),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log_lines: list[str] = []
    log_reader = threading.Thread(target=lambda: log_lines.extend(process.stderr), daemon=True)
    log_reader.start()
    try:
        yield process, log_lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_reader.join(timeout=10)


def wait_for_records(broker, topics, log_lines: list[str], process, outputs: int, read: int) -> None:
    """Until `outputs` records are in the output topics, or the reader's progress lines say it read `read`."""
    deadline = time.monotonic() + 180
    while outputs_written(broker, topics) < outputs:
        if records_read(log_lines, topics["in"]) == read:
            break
        assert process.poll() is None, "".join(log_lines)[-3000:]
        assert time.monotonic() < deadline, f"neither {outputs} outputs nor {read} records read after 180 s"
        time.sleep(1)


def comparable(events: list[dict], drop: set[str] = frozenset()) -> list[bytes]:
    """Events without their wall-clock times (and `drop`), sorted: equal lists mean the same events."""
    return sorted(
        orjson.dumps({k: v for k, v in e.items() if k not in _WALL_CLOCK_FIELDS | drop}, option=orjson.OPT_SORT_KEYS)
        for e in events
    )


def stories(articles: list[dict], cluster_events: list[dict]) -> list[list[str]]:
    """Each story's article ids, after applying the `merged` events as a consumer does."""
    parent: dict[str, str] = {}

    def root(cluster_id: str) -> str:
        while parent.get(cluster_id, cluster_id) != cluster_id:
            cluster_id = parent[cluster_id]
        return cluster_id

    for event in cluster_events:
        if event["type"] == "merged":
            parent[root(event["from"])] = root(event["into"])
    members: dict[str, list[str]] = {}
    for article in articles:
        members.setdefault(root(article["cluster"]["id"]), []).append(article["article_id"])
    # Prism's bundles run in parallel, so articles reach syndication in another order: the samples' one
    # article whose story depends on arrival order is left out (see tests/test_stories.py).
    return sorted(sorted(set(ids) - ORDER_DEPENDENT) for ids in members.values() if set(ids) - ORDER_DEPENDENT)


def assert_same_outcomes(got: dict[str, list[dict]], expected: dict[str, list[dict]], drop: set[str] = frozenset()):
    assert comparable(got["articles"], {"cluster"} | drop) == comparable(expected["articles"], {"cluster"} | drop)
    assert comparable(got["dead_letters"], drop) == comparable(expected["dead_letters"], drop)
    assert stories(got["articles"], got["clusters"]) == stories(expected["articles"], expected["clusters"])
    created = [e["article_id"] for e in got["clusters"] if e["type"] in ("created", "joined")]
    assert sorted(created) == sorted(a["article_id"] for a in got["articles"]), (
        "each article is created or joined exactly once"
    )


@pytest.fixture(scope="module")
def local_outcomes(sample_run) -> dict[str, list[dict]]:
    """The local runner's outcomes over the samples (conftest's run of them)."""
    outcomes = outputs_beside(sample_run)
    assert len(outcomes["articles"]) > 40 and len(outcomes["dead_letters"]) > 3, "the samples have both"
    return outcomes


class _CountPerKey(beam.DoFn):
    """Counts each key's elements in state. Every 40th element is slow, so Prism splits the bundle there, after
    the bundle has counted elements of every key (uncommitted until it ends)."""

    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, keyed, count=beam.DoFn.StateParam(COUNT)):
        time.sleep(0.5 if keyed[1] % 40 == 39 else 0.001)
        counted = (count.read() or 0) + 1
        count.write(counted)
        yield keyed[0], counted


def test_prism_runs_a_key_in_one_bundle_at_a_time_when_it_splits_bundles(prism_location):
    """Every update of a key's state is kept: the syndication stage's home shards count on it.

    Prism 2.77.0 without deploy/prism-patches failed this in 4 of 4 runs (one key counted 25 of its 40): a split
    released keys the running bundle still held, and two bundles then read and wrote one key at once.
    """
    elements, keys = 400, 10
    options = PipelineOptions(
        runner="PrismRunner", prism_location=prism_location, environment_type="LOOPBACK", prism_log_level="warn"
    )
    with beam.Pipeline(options=options) as pipeline:
        counts = (
            pipeline
            | beam.Create(range(elements))
            | beam.Map(lambda i: (i % keys, i)).with_output_types(tuple[int, int])
            | beam.ParDo(_CountPerKey())
            | beam.CombinePerKey(max)
        )
        assert_that(counts, equal_to([(key, elements // keys) for key in range(keys)]))


@pytest.mark.parametrize("runner, engine", [("PrismRunner", "PrismRunner"), ("DirectRunner", "DirectRunner on Prism")])
def test_file_mode_on_prism_gives_the_local_runners_outcomes(runner, engine, prism_location, local_outcomes, tmp_path):
    """DirectRunner, given a Prism binary, runs on Prism (Beam's choice, logged by the CLI)."""
    log, outcomes = run_on_files(tmp_path / "prism", "--runner", runner, "--prism_location", prism_location)
    assert f"running on {runner} (bounded)" in log and f"finished on {engine}: DONE" in log, log[-3000:]
    assert_same_outcomes(outcomes, local_outcomes)


def test_kafka_streaming_on_prism_stops_on_sigint_with_every_offset_committed(
    prism_location, local_outcomes, broker, topic_name, kafka_args
):
    """Streaming on Prism, then Ctrl-C: Prism runs the Python workers in the CLI's own process (LOOPBACK), so
    the stop reaches the readers; they end, everything read comes out, the last bundles commit, exit 0."""
    topics = {role: topic_name(role) for role in ("in", "out", "clusters", "dead")}
    # Partitions interleave differently on every run, and per-source template learning depends on the order
    # a source's articles arrive in: texts (and the languages told from them) are compared in file mode only.
    broker.create_topics([topics["in"]], partitions=3)
    broker.create_topics([topics["out"], topics["clusters"], topics["dead"]])
    lines = sample_lines()
    produce(broker.bootstrap_servers, topics["in"], lines)
    group = topic_name("group")
    expected = len(local_outcomes["articles"]) + len(local_outcomes["dead_letters"])
    with streaming_on_prism(kafka_args(broker, topics, group), prism_location, "--max-read-time", "300") as run:
        process, log_lines = run
        # Live output is not asserted: Prism sometimes holds everything after the reader while the read is
        # unbounded (seen in 3 of 8 runs; cf. apache/beam#33815), and emits it once the read ends. So stop
        # once the outputs are all there, or once the reader's progress line (every 10 s) shows every record
        # read: what the stop must give is the same either way.
        wait_for_records(broker, topics, log_lines, process, expected, len(lines))
        process.send_signal(signal.SIGINT)
        process.wait(timeout=180)
    log = "".join(log_lines)
    assert process.returncode == 0, log[-3000:]
    assert "running on PrismRunner (streaming)" in log and "SIGINT received" in log
    outcomes = {
        kind: [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, topics[role])]
        for kind, role in (("articles", "out"), ("clusters", "clusters"), ("dead_letters", "dead"))
    }
    # Kafka coordinates differ from the file's; so may the texts (see above).
    assert_same_outcomes(
        outcomes,
        local_outcomes,
        drop={
            "ingest",
            "topic",
            "partition",
            "offset",
            "timestamp",
            "text",
            "word_count",
            "boilerplate_removed",
            "language",
        },
    )
    committed = committed_offsets(broker.bootstrap_servers, topics["in"], group)
    assert sum(offset or 0 for offset in committed.values()) == len(lines), "offsets committed to the end"


@pytest.mark.parametrize("produced_before", [56, 20], ids=["all-there-at-start", "most-produced-while-reading"])
def test_max_records_on_prism_reads_exactly_that_many_records(
    produced_before, prism_location, broker, topic_name, kafka_args
):
    """Prism reads the 3 partitions with several reader instances at once: counted per instance (as before
    issue #14), `--max-records 40` was never reached by any of them (each partition holds fewer), so all 56
    records were read and the run went on to `--max-read-time`. The count is the read's: exactly 40 come
    out and are committed, whether the 40 are on the topic when the run starts (stops shared among the
    partitions) or mostly arrive while it reads (one restriction with a budget of 40)."""
    topics = {role: topic_name(role) for role in ("in", "out", "clusters", "dead")}
    broker.create_topics([topics["in"]], partitions=3)
    broker.create_topics([topics["out"], topics["clusters"], topics["dead"]])
    lines = sample_lines()
    assert len(lines) == 56
    keys = [str(number).encode() for number in range(len(lines))]
    produce(broker.bootstrap_servers, topics["in"], lines[:produced_before], keys[:produced_before])
    group = topic_name("group")
    started = time.monotonic()
    with streaming_on_prism(
        kafka_args(broker, topics, group), prism_location, "--max-records", "40", "--max-read-time", "150"
    ) as (process, log_lines):
        if produced_before < 40:
            wait_for_records(broker, topics, log_lines, process, produced_before, produced_before)
            produce(broker.bootstrap_servers, topics["in"], lines[produced_before:], keys[produced_before:])
        process.wait(timeout=240)
    log = "".join(log_lines)
    assert process.returncode == 0, log[-3000:]
    assert outputs_written(broker, topics) == 40, log[-3000:]
    committed = committed_offsets(broker.bootstrap_servers, topics["in"], group)
    assert sum(offset or 0 for offset in committed.values()) == 40, committed
    assert ("one restriction reads every partition" in log) == (produced_before < 40), "the plan the case is about"
    assert time.monotonic() - started < 150, "the run ended at --max-read-time, not at --max-records"
