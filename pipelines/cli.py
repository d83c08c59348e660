"""`wirecopy` command line: `run` (Kafka or JSONL files) and `demo`.

Options this CLI does not know are passed to Beam's PipelineOptions, so
`--runner=FlinkRunner --flink_master=...` and the like work unchanged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from schemas import codec
from pipelines.enrich import LOCAL_RUNNER, FileIO, KafkaIO, RunConfig, run
from transforms import kafkaio

_LOG = logging.getLogger("wirecopy")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirecopy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run_command = commands.add_parser(
        "run", help="run the enrichment pipeline",
        description="Kafka mode: --bootstrap-servers and the four topics. File mode: --input-jsonl and --output-jsonl. "
                    "Unknown options go to Beam (e.g. --runner=FlinkRunner).")
    kafka = run_command.add_argument_group("Kafka mode")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]")
    kafka.add_argument("--input-topic")
    kafka.add_argument("--output-topic")
    kafka.add_argument("--cluster-topic")
    kafka.add_argument("--dead-letter-topic")
    kafka.add_argument("--group-id", default="wirecopy", help="consumer group whose offsets are read and committed (default: wirecopy)")
    kafka.add_argument("--streaming", action="store_true", help="keep reading new records until stopped (default: stop at the high watermark taken at start)")
    kafka.add_argument("--max-records", type=_positive_int, help="stop after reading this many records")
    kafka.add_argument("--max-read-time", type=_positive_float, metavar="SECONDS", help="stop reading after this long")
    files = run_command.add_argument_group("file mode")
    files.add_argument("--input-jsonl", metavar="PATH", help="input file or glob, one raw article per line")
    files.add_argument("--output-jsonl", metavar="PATH", help="enriched articles, one per line")
    files.add_argument("--cluster-jsonl", metavar="PATH", help="cluster events (default: OUTPUT with .clusters.jsonl)")
    files.add_argument("--dead-letter-jsonl", metavar="PATH", help="dead letters (default: OUTPUT with .dead-letters.jsonl)")
    run_command.add_argument("--max-record-bytes", type=_positive_int, default=codec.DEFAULT_MAX_RECORD_BYTES,
                             help="records larger than this are dead-lettered (default: 10 MiB)")
    run_command.add_argument("--runner", default=LOCAL_RUNNER, help=f"Beam runner (default: {LOCAL_RUNNER}, the local runner)")

    demo = commands.add_parser("demo", help="start a local broker, load the sample articles, run the pipeline, show the results")
    demo.add_argument("--show-text", action="store_true", help="also print the start of each article's normalised text")
    return parser


def _sibling(path: str, suffix: str) -> str:
    output = Path(path)
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return str(output.with_name(stem + suffix))


def run_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunConfig:
    kafka_topics = (args.input_topic, args.output_topic, args.cluster_topic, args.dead_letter_topic)
    if args.bootstrap_servers and args.input_jsonl:
        parser.error("choose Kafka mode (--bootstrap-servers) or file mode (--input-jsonl), not both")
    if args.bootstrap_servers:
        if not all(kafka_topics):
            parser.error("Kafka mode needs --input-topic, --output-topic, --cluster-topic and --dead-letter-topic")
        io = KafkaIO(args.bootstrap_servers, *kafka_topics, group_id=args.group_id)
    elif args.input_jsonl:
        if not args.output_jsonl:
            parser.error("file mode needs --output-jsonl")
        if args.streaming or args.max_records or args.max_read_time:
            parser.error("--streaming, --max-records and --max-read-time apply to Kafka mode only")
        io = FileIO(args.input_jsonl, args.output_jsonl,
                    args.cluster_jsonl or _sibling(args.output_jsonl, ".clusters.jsonl"),
                    args.dead_letter_jsonl or _sibling(args.output_jsonl, ".dead-letters.jsonl"))
    else:
        parser.error("give --bootstrap-servers (Kafka mode) or --input-jsonl (file mode)")
    return RunConfig(io=io, streaming=args.streaming, max_records=args.max_records,
                     max_read_time_s=args.max_read_time, max_record_bytes=args.max_record_bytes, runner=args.runner)


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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    configure_logging()
    if args.command == "demo":
        if beam_args:
            parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
        from pipelines.demo import run_demo
        return run_demo(show_text=args.show_text)
    config = run_config(args, parser)
    _stop_on_signals()
    try:
        result = run(config, beam_args)
    except ValueError as error:
        _LOG.error("%s", error)
        return 2
    return 0 if result.state.endswith("DONE") else 1


if __name__ == "__main__":
    sys.exit(main())
