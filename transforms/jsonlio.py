"""JSON Lines files in and out, for backfills and evaluation.

Each input line becomes a `SourceRecord` whose topic is the file path,
partition 0, and offset the zero-based line number, so dead letters point at
the exact line. Lines are read as bytes: an undecodable line is dead-lettered
by the decode stage like a bad Kafka record, not lost while reading.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io import fileio

from wirecopy.schemas.records import SourceRecord


def records_from_lines(path: str, data: bytes):
    for number, line in enumerate(data.split(b"\n")):
        line = line.rstrip(b"\r")
        if line.strip():
            yield SourceRecord(topic=path, partition=0, offset=number, value=line)


class _ReadLinesFn(beam.DoFn):
    def process(self, readable: fileio.ReadableFile):
        yield from records_from_lines(readable.metadata.path, readable.read())


class ReadJsonLines(beam.PTransform):
    """Reads every file matching `pattern` (local path, glob or a Beam filesystem URL) as `SourceRecord`s.

    Example::

        outcomes = pipeline | ReadJsonLines("articles/*.jsonl") | DecodeArticles()
    """

    def __init__(self, pattern: str):
        super().__init__()
        if not pattern:
            raise ValueError("an input path is required")
        self._pattern = pattern

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self._pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            | "Open" >> fileio.ReadMatches()
            | "Lines" >> beam.ParDo(_ReadLinesFn())
        )


class WriteJsonLines(beam.PTransform):
    """Writes encoded JSON values (bytes), one per line, to exactly `path` (one shard).

    Example::

        values | WriteJsonLines("out/enriched.jsonl")
    """

    def __init__(self, path: str):
        super().__init__()
        if not path:
            raise ValueError("an output path is required")
        self._path = path

    def expand(self, values):
        return (
            values
            | "Lines" >> beam.Map(bytes.decode, "utf-8")
            | "Write" >> beam.io.WriteToText(self._path, shard_name_template="", num_shards=1)
        )
