"""The contenders `bench_pipeline.py` times, each run as a process of its own (startup counted, as a user pays it).

    python -m benchmarks.pipeline_contenders raw|naive BOOTSTRAP SOURCE TARGET GROUP COUNT
    python -m benchmarks.pipeline_contenders floor BOOTSTRAP SOURCE TARGET GROUP COUNT
    python -m benchmarks.pipeline_contenders wirecopy-counted COUNTS_JSON WIRECOPY_RUN_ARGS...

- `raw`: a kafka-python `KafkaConsumer` polling every record of SOURCE and a
  `KafkaProducer` sending it on to TARGET unchanged, then flush and commit;
- `naive`: the loop a user writes by hand, on the same consumer and producer:
  `langdetect` on the full text, a datasketch MinHash (128 permutations, word
  5-shingles of the lower-cased text) queried against and then inserted into
  a `MinHashLSH` (threshold 0.5), the article produced as JSON with its
  language and cluster (the earliest cluster among its matches, else its own);
- `floor`: the Beam I/O floor, our Kafka read and sink on the local runner with
  no stage between them;
- `wirecopy-counted`: `wirecopy run` with Beam's user-state reads and writes
  counted per state (written to COUNTS_JSON with the process's CPU seconds), for the
  profiled run.

Each imports only what it uses, so no contender pays for another's imports.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Callable, Iterator

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

# The naive loop's settings: datasketch's usual MinHash size, the middle of bench_syndication's thresholds.
NAIVE_PERMUTATIONS = 128
NAIVE_THRESHOLD = 0.5
NAIVE_SHINGLE_WORDS = 5


def consume_all(consumer: KafkaConsumer, count: int) -> Iterator:
    """The first `count` records the consumer polls (the whole topic, here)."""
    seen = 0
    while seen < count:
        for batch in consumer.poll(timeout_ms=500).values():
            seen += len(batch)
            yield from batch


def kafka_loop(
    bootstrap: str,
    source: str,
    target: str,
    group: str,
    count: int,
    handle: Callable[[object], tuple[bytes | None, bytes]],
) -> None:
    """Consume every record of `source`, produce `handle(record)` (key, value) to `target`, flush, commit."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    # Partitions assigned rather than subscribed: a group join would add seconds of rebalance to every run.
    consumer.assign([TopicPartition(source, partition) for partition in sorted(consumer.partitions_for_topic(source))])
    consumer.seek_to_beginning()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        for record in consume_all(consumer, count):
            key, value = handle(record)
            producer.send(target, key=key, value=value)
        producer.flush()
        consumer.commit()
    finally:
        producer.close()
        consumer.close()


class NaiveLoop:
    """What a user writes by hand: langdetect on the full text, MinHash LSH for copies, one JSON out per article."""

    def __init__(self):
        import langdetect
        from datasketch import MinHash, MinHashLSH

        langdetect.DetectorFactory.seed = 0  # langdetect is random otherwise
        self._detect, self._minhash = langdetect.detect, MinHash
        self._lsh = MinHashLSH(threshold=NAIVE_THRESHOLD, num_perm=NAIVE_PERMUTATIONS)
        self._clusters: dict[str, str] = {}

    def handle(self, record) -> tuple[bytes | None, bytes]:
        article = orjson.loads(record.value)
        text = f"{article.get('title') or ''}\n{article.get('text') or ''}"
        try:
            language = self._detect(text)
        except Exception:  # langdetect raises on text without letters; the naive loop labels it unknown
            language = "und"
        words = text.lower().split()
        minhash = self._minhash(num_perm=NAIVE_PERMUTATIONS, seed=1)
        minhash.update_batch(
            [
                " ".join(words[i : i + NAIVE_SHINGLE_WORDS]).encode()
                for i in range(max(1, len(words) - NAIVE_SHINGLE_WORDS + 1))
            ]
        )
        cluster = min((self._clusters[other] for other in self._lsh.query(minhash)), default=article["id"])
        self._lsh.insert(article["id"], minhash)
        self._clusters[article["id"]] = cluster
        return record.key, orjson.dumps({"id": article["id"], "language": language, "cluster": cluster})


def beam_floor(bootstrap: str, source: str, target: str, group: str) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from wirecopy.transforms.kafkaio import KafkaMessage, KafkaReadSpec, ReadFromKafka, StartPosition, WriteToKafka

    spec = KafkaReadSpec(
        bootstrap_servers=bootstrap, topic=source, group_id=group, start_position=StartPosition.EARLIEST
    )
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags=[])) as pipeline:
        (
            pipeline
            | ReadFromKafka(spec)
            | beam.Map(lambda record: KafkaMessage(target, record.key, record.value))
            | WriteToKafka(bootstrap)
        )


def wirecopy_counted(counts_path: str, run_args: list[str]) -> int:
    """`wirecopy run RUN_ARGS`, counting user-state reads and writes per state id (this process's SDK harness)."""
    from apache_beam.runners.worker import bundle_processor

    from wirecopy.pipelines import cli

    counts: collections.Counter = collections.Counter()
    state_class = bundle_processor.ReadModifyWriteRuntimeState
    read, write = state_class.read, state_class.write

    def state_id(state) -> str:
        return state._underlying_bag_state._state_key.bag_user_state.user_state_id

    def counted_read(state):
        counts[state_id(state)] += 1
        return read(state)

    def counted_write(state, value):
        counts[state_id(state)] += 1
        return write(state, value)

    state_class.read, state_class.write = counted_read, counted_write
    exit_code = cli.main(["run", *run_args])
    with open(counts_path, "wb") as out:
        out.write(orjson.dumps({**counts, "process_cpu_s": time.process_time()}))
    return exit_code


def main(argv: list[str]) -> int:
    contender = argv[0]
    if contender == "wirecopy-counted":
        return wirecopy_counted(argv[1], argv[2:])
    bootstrap, source, target, group, count = argv[1:6]
    if contender == "raw":
        kafka_loop(bootstrap, source, target, group, int(count), lambda record: (record.key, record.value))
    elif contender == "naive":
        kafka_loop(bootstrap, source, target, group, int(count), NaiveLoop().handle)
    elif contender == "floor":
        beam_floor(bootstrap, source, target, group)
    else:
        raise SystemExit(f"unknown contender {contender!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
