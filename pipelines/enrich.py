"""The enrichment pipeline: the same stages for Kafka and for JSONL files.

    records → decode → normalise → language → syndication → encode → sink

One stream from the reader to the sink, with no shuffle and no Flatten: on
the local runner (FnApiRunner) either one stalls after an unbounded read until
the read ends. Fused, the sink flushes before the reader's bundle finalizer
commits the Kafka offsets (at-least-once). See `transforms/stage.py`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import socket
import time
from typing import Any, Callable, Mapping, cast

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    StandardOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, worker_handlers

from wirecopy.pipelines.flink_cluster import cancel_on_cluster, rest_address
from wirecopy.schemas import codec
from wirecopy.transforms.events import DecodeArticles, EncodeEvents, EventKind, check_max_event_bytes
from wirecopy.transforms.jsonlio import ReadJsonLines, WriteJsonLines
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from wirecopy.transforms.kafkaio import (
    KafkaMessage,
    KafkaReadSpec,
    ReadFromKafka,
    ReadStop,
    WriteToKafka,
    check_producer_config,
    group_lag,
    largest_message_bytes,
)
from wirecopy.transforms import language
from wirecopy.transforms.language import DetectLanguage
from wirecopy.transforms.normalise import Normalise
from wirecopy.transforms.stories import TrackStories
from wirecopy.transforms.syndication import DEFAULT_HORIZON_MS, ClusterSyndicated

_LOG = logging.getLogger(__name__)

LOCAL_RUNNER = "FnApiRunner"


class SetupError(Exception):
    """The pipeline cannot start as configured; the message says why."""


DEFAULT_GROUP_ID = "wirecopy"


@dataclasses.dataclass(frozen=True)
class KafkaIO:
    """Kafka mode: the input read (topic, group, where to start, when to stop) and the output topics.

    Validated when made: a setting the sink or the events' size limit cannot
    work with raises ValueError here, before any pipeline is built.
    """

    read: KafkaReadSpec
    output_topic: str
    cluster_topic: str
    dead_letter_topic: str
    producer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    story_topic: str | None = None  # without it the story view is not built

    def __post_init__(self):
        check_producer_config(self.producer_config)
        check_max_event_bytes(largest_message_bytes(self.producer_config))

    @property
    def bootstrap_servers(self) -> str:
        return self.read.bootstrap_servers

    @property
    def input_topic(self) -> str:
        return self.read.topic

    def topic_for(self, kind: EventKind) -> str:
        topic = {
            EventKind.ARTICLE: self.output_topic,
            EventKind.CLUSTER: self.cluster_topic,
            EventKind.DEAD_LETTER: self.dead_letter_topic,
            EventKind.STORY: self.story_topic,
        }[kind]
        if topic is None:  # the story view is built only with a story topic
            raise ValueError(f"no topic for {kind.value} events")
        return topic


@dataclasses.dataclass(frozen=True)
class FileIO:
    input_path: str
    output_path: str
    cluster_path: str
    dead_letter_path: str
    story_path: str


@dataclasses.dataclass(frozen=True)
class RunConfig:
    io: KafkaIO | FileIO
    max_record_bytes: int = codec.DEFAULT_MAX_RECORD_BYTES
    language_threshold: float = language.DEFAULT_THRESHOLD
    syndication_horizon: dt.timedelta = dt.timedelta(milliseconds=DEFAULT_HORIZON_MS)
    runner: str = LOCAL_RUNNER

    @property
    def streaming(self) -> bool:
        """Whether the run keeps reading (Kafka mode's read is unbounded); file mode is always bounded."""
        return isinstance(self.io, KafkaIO) and self.io.read.streaming


def enrich(records: beam.PCollection, config: RunConfig) -> beam.PCollection:
    """`SourceRecord`s → `OutputEvent`s (enriched articles, cluster events, stories, dead letters), in one stream."""
    outcomes = (
        records
        | "Decode" >> DecodeArticles(config.max_record_bytes)
        | "Normalise" >> Normalise()
        | "Language" >> DetectLanguage(config.language_threshold)
        | "Syndication" >> ClusterSyndicated(config.syndication_horizon)
    )
    if not isinstance(config.io, KafkaIO) or config.io.story_topic:
        outcomes = outcomes | "Stories" >> TrackStories(config.syndication_horizon)
    return outcomes | "Encode" >> EncodeEvents(
        largest_message_bytes(config.io.producer_config) if isinstance(config.io, KafkaIO) else None
    )


def build(pipeline: beam.Pipeline, config: RunConfig, read_stop: ReadStop | None = None) -> None:
    io = config.io
    if isinstance(io, KafkaIO):
        (
            enrich(pipeline | "ReadKafka" >> ReadFromKafka(io.read, read_stop), config)
            | "ToMessages" >> beam.Map(lambda e: KafkaMessage(io.topic_for(e.kind), e.key, e.value))
            | "WriteKafka" >> WriteToKafka(io.bootstrap_servers, io.producer_config)
        )
    else:
        kinds = list(EventKind)
        # Beam annotates the function as a PartitionFn; a callable is what its documentation passes.
        by_kind_index = beam.Partition(lambda event, _: kinds.index(event.kind), len(kinds))  # type: ignore[arg-type]
        by_kind = enrich(pipeline | "ReadFiles" >> ReadJsonLines(io.input_path), config) | "ByKind" >> by_kind_index
        paths = {
            EventKind.ARTICLE: io.output_path,
            EventKind.CLUSTER: io.cluster_path,
            EventKind.DEAD_LETTER: io.dead_letter_path,
            EventKind.STORY: io.story_path,
        }
        for kind, events in zip(kinds, by_kind):
            (
                events
                | f"{kind.name.title()}Values" >> beam.Map(lambda e: e.value)
                | f"Write{kind.name.title()}" >> WriteJsonLines(paths[kind])
            )


# Beam's Flink runner finishes a bundle still open when a checkpoint starts inside the snapshot, after the
# barrier has gone downstream: the bundle's output is kept in the operator's state and sent on only when that
# operator starts its next bundle. The read plan's operator (Impulse -> PlanRead) has one bundle ever, so a
# checkpoint during it strands the plan and the job reads nothing while its checkpoints go on completing (seen
# in a whole-suite run: 207 checkpoints in 4 min, each of the same 334,265 bytes, nothing read). With this
# flag the bundle is finished before the barrier and its output goes downstream (FlinkPipelineOptions).
FLINK_FINISH_BUNDLE_BEFORE_CHECKPOINT = "--finish_bundle_before_checkpointing"


def pipeline_options(config: RunConfig, beam_args: list[str]) -> PipelineOptions:
    if runner_family(config.runner) == "flink" and FLINK_FINISH_BUNDLE_BEFORE_CHECKPOINT not in beam_args:
        beam_args = [*beam_args, FLINK_FINISH_BUNDLE_BEFORE_CHECKPOINT]
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = config.streaming
    if config.runner != LOCAL_RUNNER:
        options.view_as(StandardOptions).runner = config.runner
    check_prism_is_given(config.runner, options)
    if isinstance(config.io, KafkaIO):
        check_runner_supports_kafka(config.runner, config.streaming, options)
    workers = options.view_as(DirectOptions).direct_num_workers
    if isinstance(config.io, KafkaIO) and workers not in (None, 0, 1):
        # Verified: with several local workers, FnApiRunner drops the unbounded
        # reader's deferred remainder (9,544 of 100,000 records read).
        raise SetupError("--direct_num_workers > 1 loses Kafka records on the local runner; leave it at 1")
    return options


def local_runner() -> FnApiRunner:
    """FnApiRunner with its in-process worker's state cache off.

    That worker hands out a new cache token per bundle, so the cache keeps
    nothing across bundles, and our stateful steps read each key once per
    bundle: it saves no state request, but every key a bundle touches pays
    its bookkeeping (a loading entry with its own lock and event, weighing,
    re-insertion on clear and on write). `benchmarks/bench_state_cost.py`, a
    read and a write on a new key per element: 227 -> 137 us over a pipeline
    without them (~32 such keys per article, its index buckets). The size is a module constant of Beam's
    (the embedded worker takes no option), read when the runner starts its
    worker; other runners keep their own cache settings.
    """
    worker_handlers.STATE_CACHE_SIZE_MB = 0
    return FnApiRunner()


def runner_family(runner: str) -> str:
    """`FlinkRunner`, `flink`, `apache_beam.runners.portability.flink_runner.FlinkRunner` → `flink`."""
    return runner.rsplit(".", 1)[-1].lower().removesuffix("runner")


def check_prism_is_given(runner: str, options: PipelineOptions) -> None:
    """Refuse Prism (and the DirectRunner, which runs on it) without `--prism_location`.

    Without it Beam downloads its own Prism build, and Prism 2.77.0 loses state
    updates when it splits a bundle of a stateful stage: articles vanish from
    the syndication stage without an error (deploy/README.md, Prism).
    `deploy/prism.sh` builds it with the fix.
    """
    if runner_family(runner) in ("prism", "direct") and not options.view_as(PrismRunnerOptions).prism_location:
        raise SetupError(
            f"{runner} needs --prism_location PATH: the Prism build Beam downloads loses state updates when it "
            "splits bundles (articles go missing); build a fixed one with deploy/prism.sh and pass its path"
        )


def check_runner_supports_kafka(runner: str, streaming: bool, options: PipelineOptions) -> None:
    """Refuse, before anything starts, a Kafka run the runner would not commit offsets for.

    The reader commits offsets in a bundle finalizer. Portable Flink calls
    finalizers only after a completed checkpoint, in streaming mode: a batch
    job or one without checkpoints reads and writes but never commits. The
    portable Spark runner throws on the first bundle that asks for finalization.
    """
    family = runner_family(runner)
    if family == "flink":
        interval = options.get_all_options(retain_unknown_options=True).get("checkpointing_interval")
        if not streaming:
            raise SetupError(
                "Kafka mode on Flink needs --streaming (Flink commits offsets only after checkpoints, "
                "which batch jobs do not take); bound a backfill with --max-read-time"
            )
        # A bare flag (or `--checkpointing_interval -1`, which Beam parses as one) comes back as True.
        if not (isinstance(interval, str) and interval.isdigit() and int(interval) > 0):
            raise SetupError(
                "Kafka mode on Flink needs --checkpointing_interval MS (offsets commit when a "
                "checkpoint completes; without checkpoints they never do)"
            )
    elif family == "spark":
        raise SetupError(
            "Kafka mode cannot run on Spark: its portable runner does not support bundle finalization, "
            "which commits the offsets; use file mode there"
        )


def direct_runner_engine(result: beam.runners.runner.PipelineResult) -> str:
    """Which engine Beam's DirectRunner chose, told by its result: Prism when it can
    start it (`--prism_location`, else a download from GitHub), otherwise its
    in-process runners (FnApiRunner for bounded runs)."""
    kind = type(result).__module__.rsplit(".", 1)[-1]
    return {"portable_runner": "Prism", "fn_runner": "FnApiRunner"}.get(kind, "BundleBasedDirectRunner")


def explained(error: KafkaError, consumer_config: Mapping[str, Any], listening: bool) -> str:
    """The client's error, with the likely cause when it hides one.

    A broker closes the connection right after refusing SASL credentials, and kafka-python 3.0 drops the refusal
    it had read when that same read ends at the close: the client then reports only that it could not bootstrap
    (seen under load). A broker that accepts connections (`listening`) but no SASL client is such a refusal.
    """
    mechanism = consumer_config.get("sasl_mechanism")
    if mechanism and listening and "Authentication failed" not in str(error):
        return (
            f"{error}: the broker accepts connections but closed them while authenticating; "
            f"check the {mechanism} user and password"
        )
    return str(error)


def _listening(bootstrap_servers: str) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


def check_kafka(io: KafkaIO) -> None:
    """Fail fast, in seconds and with a plain message, when Kafka is unreachable or a topic is missing."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=io.bootstrap_servers, **{"bootstrap_timeout_ms": 5000, **io.read.consumer_config}
        )
    except KafkaError as error:
        reason = explained(error, io.read.consumer_config, _listening(io.bootstrap_servers))
        raise SetupError(f"cannot reach Kafka at {io.bootstrap_servers}: {reason}") from None
    try:
        existing = consumer.topics()
    except KafkaError as error:
        raise SetupError(f"cannot list topics on {io.bootstrap_servers}: {error}") from None
    finally:
        consumer.close()
    topics = (io.input_topic, io.output_topic, io.cluster_topic, io.dead_letter_topic, io.story_topic)
    missing = [t for t in topics if t and t not in existing]
    if missing:
        raise SetupError(f"topics missing on {io.bootstrap_servers}: {', '.join(missing)} (create them first)")


@dataclasses.dataclass(frozen=True)
class RunResult:
    runner: str
    state: str
    seconds: float
    counters: dict[str, int]  # Beam counters; for Kafka, `lag.<topic>.<partition>` at the end


def workers_run_here(runner: str, options: PipelineOptions) -> bool:
    """Whether the Python workers run in this process: the local runner's, and
    Prism's and the DirectRunner's unless another environment is asked for
    (Prism defaults to LOOPBACK: its workers are threads of the launcher)."""
    return runner_family(runner) in ("fnapi", "prism", "direct") and options.view_as(
        PortableOptions
    ).environment_type in (None, "LOOPBACK")


class _CancelledOnCluster:
    """A Flink job's result whose cancel() also cancels the job on its session cluster (see flink_cluster)."""

    def __init__(self, result: beam.runners.runner.PipelineResult, cluster: str):
        self._result, self._cluster = result, cluster

    def cancel(self):
        state = self._result.cancel()
        # Beam's portable result keeps the job service's id only as `_job_id` (no public accessor in 2.77).
        cancel_on_cluster(self._cluster, self._result._job_id)  # type: ignore[attr-defined]
        return state

    def __getattr__(self, name: str):
        return getattr(self._result, name)


def run(
    config: RunConfig,
    beam_args: list[str] | None = None,
    on_started: Callable[[beam.runners.runner.PipelineResult, bool], None] | None = None,
    read_stop: ReadStop | None = None,
) -> RunResult:
    """Run to the end. `on_started(job, workers_run_here)` is called once the job is submitted; `read_stop`,
    when requested, ends a Kafka read cleanly (readers in this process only)."""
    options = pipeline_options(config, beam_args or [])
    runner = local_runner() if config.runner == LOCAL_RUNNER else None
    runner_name = type(runner).__name__ if runner else options.view_as(StandardOptions).runner
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, config, read_stop)
    if isinstance(config.io, KafkaIO):
        check_kafka(config.io)
    _LOG.info("running on %s (%s)", runner_name, "streaming" if config.streaming else "bounded")
    started = time.monotonic()
    result = pipeline.run()
    cluster = (
        rest_address(options.view_as(FlinkRunnerOptions).flink_master)
        if runner_family(runner_name) == "flink"
        else None
    )
    if cluster is not None:
        # The wrapper answers everything else as the result it wraps.
        result = cast(beam.runners.runner.PipelineResult, _CancelledOnCluster(result, cluster))
    if on_started is not None:
        on_started(result, workers_run_here(runner_name, options))
    if runner_family(runner_name) == "direct":
        runner_name = f"DirectRunner on {direct_runner_engine(result)}"
        _LOG.info("%s", runner_name)
    try:
        state = result.wait_until_finish()
    except RuntimeError:
        # The portable runners raise for a job that ended other than DONE;
        # a cancelled one (Ctrl-C, see cli.JobStopper) is an outcome to report.
        if not str(result.state).endswith("CANCELLED"):
            raise
        state = result.state
    metrics = result.metrics().query()
    counters: dict[str, int] = {}
    for counter in metrics["counters"]:
        if counter.key.metric.namespace == "wirecopy":
            name = counter.key.metric.name
            counters[name] = counters.get(name, 0) + (counter.committed or counter.attempted or 0)
    if isinstance(config.io, KafkaIO):
        # The group's lag from Kafka itself, not the reader's backlog gauges:
        # the local runner reports an arbitrary bundle's gauge value.
        try:
            for partition, lag in group_lag(config.io.read).items():
                counters[f"lag.{config.io.input_topic}.{partition}"] = lag
        except KafkaError as error:  # the run itself is over and committed; only the report lacks it
            _LOG.warning("could not ask Kafka for the group's lag: %s", error)
    outcome = RunResult(runner_name, str(state), time.monotonic() - started, dict(sorted(counters.items())))
    _LOG.info(
        "finished on %s: %s in %.1f s; %s",
        outcome.runner,
        outcome.state,
        outcome.seconds,
        ", ".join(f"{name}={value}" for name, value in outcome.counters.items()),
    )
    return outcome
