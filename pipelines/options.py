"""`wirecopy run`'s options: a Beam `PipelineOptions` subclass, so Beam parses
and lists them beside its own and an option neither knows is refused (with
the nearest name, as Beam's own "did you mean" finds it) instead of ignored.

Connection settings also come from the environment, as Kafka tools and
twelve-factor services take them; a value on the command line wins over the
environment, which wins over `--kafka-config`'s file (`bootstrap.servers`,
`group.id`), which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import difflib
import importlib
import os
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from wirecopy.pipelines.enrich import DEFAULT_GROUP_ID, LOCAL_RUNNER
from wirecopy.schemas import codec
from wirecopy.transforms import language
from wirecopy.transforms.kafkaio import DEFAULT_PARTITION_DISCOVERY_INTERVAL_S, StartPosition, TimestampKind
from wirecopy.transforms.syndication import DEFAULT_HORIZON_MS

# Above this share of dead letters among the records a run read, the run
# fails: a wrong topic, a producer's new format or a broken stage, not bad
# records here and there (the samples, built to hold bad records, have 6 of 58).
DEFAULT_MAX_DEAD_LETTER_RATIO = 0.5

_DAY_MS = 24 * 3600 * 1000

# option dest → environment variable
ENVIRONMENT = {
    "bootstrap_servers": "WIRECOPY_BOOTSTRAP_SERVERS",
    "input_topic": "WIRECOPY_INPUT_TOPIC",
    "output_topic": "WIRECOPY_OUTPUT_TOPIC",
    "cluster_topic": "WIRECOPY_CLUSTER_TOPIC",
    "dead_letter_topic": "WIRECOPY_DEAD_LETTER_TOPIC",
    "story_topic": "WIRECOPY_STORY_TOPIC",
    "group_id": "WIRECOPY_GROUP_ID",
    "kafka_config": "WIRECOPY_KAFKA_CONFIG",
}


class UsageError(Exception):
    """The command line is wrong; the message says how, in one line."""


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


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return value


def _rfc3339(text: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z or +01:00): {text!r}")
    return text  # a string: Beam keeps option values as JSON-able values


def _environment_note(dest: str) -> str:
    return f" [env {ENVIRONMENT[dest]}]" if dest in ENVIRONMENT else ""


class WirecopyOptions(PipelineOptions):
    """wirecopy's own options. `--runner` and `--streaming` are Beam's (StandardOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        def add(group, flag: str, **kwargs: Any) -> None:
            dest = flag.removeprefix("--").replace("-", "_")
            kwargs["help"] = kwargs.get("help", "") + _environment_note(dest)
            group.add_argument(flag, dest=dest, **kwargs)

        kafka = parser.add_argument_group("wirecopy, Kafka mode")
        add(kafka, "--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]", help="the Kafka brokers")
        add(kafka, "--input-topic", help="raw articles")
        add(kafka, "--output-topic", help="enriched articles")
        add(kafka, "--cluster-topic", help="cluster events")
        add(
            kafka,
            "--story-topic",
            help="stories: each story's whole current state, keyed by story id "
            "(create it with cleanup.policy=compact); none written without it",
        )
        add(kafka, "--dead-letter-topic", help="dead letters")
        add(
            kafka,
            "--group-id",
            help=f"consumer group whose offsets are read and committed (default: {DEFAULT_GROUP_ID})",
        )
        add(
            kafka,
            "--max-records",
            type=_positive_int,
            metavar="N",
            help="read N records in all, then stop: per run, whatever the runner's parallelism or restarts from "
            "checkpoints. When the topic holds N records past the start positions, each partition reads a share in "
            "proportion to its backlog (stop offsets planned at the start; partitions added later are not read). "
            "When it holds fewer, a run without --streaming stops at the high watermark as always; with --streaming "
            "the rest are the next records to arrive in any partition (new ones included), one reader reading them "
            "all. Offsets are counted: gaps (compaction, transaction markers) give fewer records",
        )
        add(kafka, "--max-read-time", type=_positive_float, metavar="SECONDS", help="stop reading after this long")
        add(
            kafka,
            "--start-from",
            choices=[p.value for p in StartPosition],
            default=StartPosition.COMMITTED.value,
            help="committed (default): the group's committed offsets, else the earliest; or earliest, latest",
        )
        add(
            kafka,
            "--start-time",
            type=_rfc3339,
            metavar="RFC3339",
            help="start at the first record at or after this time (overrides --start-from)",
        )
        add(
            kafka,
            "--timestamp-policy",
            choices=[k.value for k in TimestampKind],
            default=TimestampKind.CREATE_TIME.value,
            help="event time of a record: its create time (default), log-append time, processing time, "
            "or the article's published_at (record time when absent)",
        )
        add(
            kafka,
            "--max-event-delay",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="how far behind the newest event time the watermark stays (for out-of-order event times)",
        )
        add(
            kafka,
            "--partition-discovery-interval",
            type=_positive_float,
            default=DEFAULT_PARTITION_DISCOVERY_INTERVAL_S,
            metavar="SECONDS",
            help="streaming: how often to look for partitions added to the input topic "
            f"(default {DEFAULT_PARTITION_DISCOVERY_INTERVAL_S:g})",
        )
        add(
            kafka,
            "--kafka-config",
            metavar="FILE",
            help="a Java client.properties (or kafka-python names): settings for consumer and producer; its "
            "bootstrap.servers and group.id count when neither the command line nor the environment gives them",
        )
        add(
            kafka,
            "--consumer-config",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a consumer setting (repeatable)",
        )
        add(
            kafka,
            "--producer-config",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a producer setting (repeatable)",
        )
        files = parser.add_argument_group("wirecopy, file mode")
        add(files, "--input-jsonl", metavar="PATH", help="input file or glob, one raw article per line")
        add(files, "--output-jsonl", metavar="PATH", help="enriched articles, one per line")
        add(files, "--cluster-jsonl", metavar="PATH", help="cluster events (default: OUTPUT with .clusters.jsonl)")
        add(
            files, "--dead-letter-jsonl", metavar="PATH", help="dead letters (default: OUTPUT with .dead-letters.jsonl)"
        )
        add(files, "--story-jsonl", metavar="PATH", help="story records (default: OUTPUT with .stories.jsonl)")
        both = parser.add_argument_group("wirecopy, both modes")
        add(
            both,
            "--max-record-bytes",
            type=_positive_int,
            default=codec.DEFAULT_MAX_RECORD_BYTES,
            help="records larger than this are dead-lettered (default: 10 MiB)",
        )
        add(
            both,
            "--language-threshold",
            type=_share,
            default=language.DEFAULT_THRESHOLD,
            metavar="P",
            help=f"language confidence below which the code is `und` (default {language.DEFAULT_THRESHOLD})",
        )
        add(
            both,
            "--syndication-horizon-days",
            type=_positive_float,
            default=DEFAULT_HORIZON_MS / _DAY_MS,
            metavar="DAYS",
            help="how long, in event time, an article stays matchable by later copies "
            f"(default {DEFAULT_HORIZON_MS / _DAY_MS:g})",
        )
        add(
            both,
            "--max-dead-letter-ratio",
            type=_share,
            default=DEFAULT_MAX_DEAD_LETTER_RATIO,
            metavar="R",
            help="a run that dead-letters a larger share of the records it read exits 1 "
            f"(default {DEFAULT_MAX_DEAD_LETTER_RATIO}; 1 never fails)",
        )


class _StrictParser(_BeamArgumentParser):
    """Beam's argument parser, raising instead of printing Beam's whole usage and exiting."""

    def error(self, message: str):
        raise UsageError(message)


def _parser(option_classes) -> _StrictParser:
    parser = _StrictParser(prog="wirecopy run", allow_abbrev=False, add_help=False)
    for option_class in option_classes:
        option_class._add_argparse_args(parser)  # how every PipelineOptions class declares its options
    return parser


@dataclasses.dataclass(frozen=True)
class ParsedOptions:
    wirecopy: argparse.Namespace  # every WirecopyOptions value, environment applied
    beam_args: list[str]  # the rest, for Beam: --runner, --streaming, runner options
    runner: str
    streaming: bool


def help_text() -> str:
    parser = argparse.ArgumentParser(
        prog="wirecopy run",
        allow_abbrev=False,
        description="Kafka mode: --bootstrap-servers and the four topics. File mode: --input-jsonl and --output-jsonl.",
        epilog=f"Beam's options are accepted too: --runner (default {LOCAL_RUNNER}, the local runner), --streaming "
        "(Kafka mode: keep reading until stopped), and the runner's own (--flink_master, ...).",
    )
    WirecopyOptions._add_argparse_args(parser)
    return parser.format_help()


_JOB_SERVER_RUNNERS = frozenset({"flink", "spark", "portable"})


def parse(flags: list[str]) -> ParsedOptions:
    """wirecopy's and Beam's options from `wirecopy run`'s arguments; raises `UsageError`."""
    every_parser = _parser({str(c): c for c in PipelineOptions.__subclasses__()}.values())
    _, unknown = every_parser.parse_known_args(flags)  # type errors of any option raise here
    requested = (PipelineOptions(flags).view_as(StandardOptions).runner or "").lower().removesuffix("runner")
    # A job-server runner's Java options (Flink's --checkpointing_interval, ...) have no Python
    # definition: Beam passes them to the job server, which checks them.
    if unknown and requested not in _JOB_SERVER_RUNNERS:
        raise UsageError(_unknown_message(unknown[0], every_parser))
    ours, beam_args = _parser([WirecopyOptions]).parse_known_args(flags)
    for dest, variable in ENVIRONMENT.items():
        if getattr(ours, dest) is None and os.environ.get(variable):
            setattr(ours, dest, os.environ[variable])
    standard = PipelineOptions(beam_args).view_as(StandardOptions)
    runner = standard.runner or LOCAL_RUNNER
    check_runner(runner)
    return ParsedOptions(ours, beam_args, runner, bool(standard.streaming))


def _unknown_message(argument: str, parser: argparse.ArgumentParser) -> str:
    if not argument.startswith("--"):
        return f"unexpected argument {argument!r} (options are --name VALUE or --name=VALUE)"
    name = argument.split("=", 1)[0]
    known = [option for action in parser._actions for option in action.option_strings]
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else " (wirecopy run --help lists them)")


def check_runner(name: str) -> None:
    """Refuse a runner Beam does not know, as Beam's create_runner resolves names (case-insensitive, "Runner" optional)."""
    known = {path.rsplit(".", 1)[1]: path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    lowered = {runner.lower() for runner in known}
    if name.lower() in lowered or name.lower() + "runner" in lowered:
        return
    if "." in name:  # a PipelineRunner subclass by its module path
        module, _, runner_class = name.rpartition(".")
        try:
            getattr(importlib.import_module(module), runner_class)
            return
        except (ImportError, AttributeError) as error:
            raise UsageError(f"--runner {name}: {error}") from None
    close = difflib.get_close_matches(name, list(known), n=1)
    raise UsageError(
        f"unknown runner {name!r}"
        + (f"; did you mean {close[0]}?" if close else "")
        + f" (Beam's runners: {', '.join(sorted(known))}, or a module.Class path)"
    )
