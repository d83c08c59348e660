"""The pipeline as a separate process against a real broker, under crashes, signals and broker faults."""

import base64
import datetime as dt
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from apache_kafka import on_both_brokers, recent_record_time_ms
from wirecopy.pipelines.local_broker import LocalBroker, committed_offsets, read_topic

pytestmark = pytest.mark.broker

# On both brokers: what a real Kafka can do differently, the broker's side of delivery and commits (SIGKILL,
# restart with its data kept, CreatePartitions, poison input, the broker's own record size limit). On Tansu
# only: signal handling, which is the CLI's and the runner's, whatever the broker.

REPO = Path(__file__).resolve().parents[1]
# The time at the start of each of the CLI's log lines.
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)
_WORDS = (
    "council budget river harbour minister election rail ticket storm coast farmers drought water price "
    "school teachers union strike hospital doctors patients bridge repair traffic city mayor museum "
    "festival music artists energy solar wind grid workers factory jobs exports port ships cargo"
).split()


def synthetic_articles(count: int, prefix: str, seed: int = 7) -> list[dict]:
    """Distinct English-like articles (each its own story), long enough for every stage."""
    rng = random.Random(seed)
    articles = []
    for n in range(count):
        paragraphs = ["The " + " ".join(rng.choice(_WORDS) for _ in range(40)) + "." for _ in range(3)]
        articles.append(
            {
                "id": f"{prefix}-{n}",
                "url": f"https://news.example/{prefix}/{n}?utm_source=feed",
                "source": "news.example",
                "title": f"Story {n} about the {rng.choice(_WORDS)}",
                "text": "\n\n".join(paragraphs),
                "published_at": "2026-11-20T10:00:00Z",
            }
        )
    return articles


def produce_articles(bootstrap: str, topic: str, articles: list[dict], partition: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for article in articles:
        producer.send(topic, key=article["id"].encode(), value=orjson.dumps(article), partition=partition)
    producer.flush()
    producer.close()


class Topics:
    def __init__(self, topic_name):
        self.input, self.output = topic_name("in"), topic_name("out")
        self.clusters, self.dead = topic_name("clusters"), topic_name("dead")

    def create(self, broker: LocalBroker, partitions: int = 3) -> None:
        broker.create_topics([self.input], partitions=partitions)
        broker.create_topics([self.output, self.clusters, self.dead])

    def args(self, bootstrap: str, group: str) -> list[str]:
        return [
            "--bootstrap-servers",
            bootstrap,
            "--input-topic",
            self.input,
            "--output-topic",
            self.output,
            "--cluster-topic",
            self.clusters,
            "--dead-letter-topic",
            self.dead,
            "--group-id",
            group,
        ]


def start_pipeline(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wirecopy.pipelines.cli", "run", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def article_ids(bootstrap: str, topic: str) -> list[str]:
    return [orjson.loads(record.value)["article_id"] for record in read_topic(bootstrap, topic)]


def wait_until(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"the pipeline exited ({process.returncode}) while waiting for {what}:\n{process.stderr.read()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)


def committed_total(bootstrap: str, topic: str, group: str) -> int:
    return sum(offset or 0 for offset in committed_offsets(bootstrap, topic, group).values())


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> str:
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


@on_both_brokers
def test_at_least_once_across_sigkill(broker, topic_name):
    """2,000 articles, 3 partitions: SIGKILL mid-stream, restart with the same group, nothing lost.

    The kill comes after 400 commits, leaving 1,600 articles to read: several seconds of work (the
    README's sample run reads ~250 articles/s), so it lands mid-stream, and the restart reads from mid-log.
    (5,000 articles made this the suite's slowest test, 2-3.5 minutes per broker, for the same guarantee.)
    """
    topics, group = Topics(topic_name), topic_name("group")
    topics.create(broker)
    articles = synthetic_articles(2000, "crash")
    produce_articles(broker.bootstrap_servers, topics.input, articles)

    first = start_pipeline(*topics.args(broker.bootstrap_servers, group), "--streaming")
    wait_until(
        lambda: committed_total(broker.bootstrap_servers, topics.input, group) >= 400,
        240,
        "the first 400 commits",
        first,
    )
    first.kill()
    first.wait()
    committed_at_kill = committed_total(broker.bootstrap_servers, topics.input, group)
    written_at_kill = len(article_ids(broker.bootstrap_servers, topics.output))
    assert committed_at_kill < len(articles), "the kill must land mid-stream for this test to mean anything"

    second = start_pipeline(*topics.args(broker.bootstrap_servers, group), "--streaming")
    wait_until(
        lambda: committed_total(broker.bootstrap_servers, topics.input, group) >= len(articles),
        300,
        "every record committed after the restart",
        second,
    )
    stop(second)

    written = Counter(article_ids(broker.bootstrap_servers, topics.output))
    assert set(written) == {a["id"] for a in articles}, "every article reaches the output"
    duplicates = sum(written.values()) - len(written)
    assert duplicates <= written_at_kill - committed_at_kill, (
        f"{duplicates} duplicates, but only {written_at_kill - committed_at_kill} outputs were uncommitted at the kill"
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signals_stop_streaming_gracefully(broker, topic_name, stop_signal):
    """Ctrl-C and SIGTERM: finish the bundle, flush, commit, exit 0."""
    topics, group = Topics(topic_name), topic_name("group")
    topics.create(broker)
    articles = synthetic_articles(300, f"signal-{stop_signal.name}")
    produce_articles(broker.bootstrap_servers, topics.input, articles)
    process = start_pipeline(*topics.args(broker.bootstrap_servers, group), "--streaming")
    wait_until(
        lambda: committed_total(broker.bootstrap_servers, topics.input, group) >= 300, 120, "all commits", process
    )
    stderr = stop(process, stop_signal)
    assert f"{stop_signal.name} received" in stderr and "finished on FnApiRunner" in stderr
    assert sorted(article_ids(broker.bootstrap_servers, topics.output)) == sorted(a["id"] for a in articles)


@on_both_brokers
def test_broker_restart_mid_stream(broker_kind, fresh_broker, topic_name):
    """Stop the broker, start it again on the same ports: the pipeline reconnects and loses nothing produced after.
    Tansu keeps its data in memory, so it comes back empty; Apache Kafka comes back with its topics, records and
    the group's committed offsets, and the pipeline goes on from them."""
    topics, group = Topics(topic_name), topic_name("group")
    before, after = synthetic_articles(150, "before"), synthetic_articles(60, "after", seed=11)
    with fresh_broker() as broker:
        topics.create(broker)
        produce_articles(broker.bootstrap_servers, topics.input, before)
        process = start_pipeline(*topics.args(broker.bootstrap_servers, group), "--streaming")
        wait_until(
            lambda: len(article_ids(broker.bootstrap_servers, topics.output)) >= 150,
            120,
            "the articles produced before the restart",
            process,
        )

        broker.restart()
        if broker_kind == "tansu":
            topics.create(broker)
        produce_articles(broker.bootstrap_servers, topics.input, after)
        wait_until(
            lambda: {a["id"] for a in after} <= set(article_ids(broker.bootstrap_servers, topics.output)),
            180,
            "the articles produced after the restart",
            process,
        )
        if broker_kind == "apache_kafka":
            wait_until(
                lambda: committed_total(broker.bootstrap_servers, topics.input, group) == 210,
                60,
                "the offsets of every article committed",
                process,
            )
        stop(process)
        if broker_kind == "apache_kafka":
            written = Counter(article_ids(broker.bootstrap_servers, topics.output))
            assert set(written) == {a["id"] for a in before + after}, "what was written before the restart is kept"


@on_both_brokers
def test_partitions_added_while_streaming_are_read(broker_kind, broker, topic_name):
    """The input topic grows from 1 to 3 partitions: Apache Kafka adds them in place (CreatePartitions);
    Tansu cannot, so there the topic is deleted and re-created with 3."""
    topics, group = Topics(topic_name), topic_name("group")
    topics.create(broker, partitions=1)
    first = synthetic_articles(40, "one")
    produce_articles(broker.bootstrap_servers, topics.input, first)
    process = start_pipeline(
        *topics.args(broker.bootstrap_servers, group), "--streaming", "--partition-discovery-interval", "1"
    )
    wait_until(
        lambda: len(article_ids(broker.bootstrap_servers, topics.output)) >= 40, 120, "the first articles", process
    )

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    if broker_kind == "apache_kafka":
        admin.create_partitions({topics.input: 3})
    else:
        admin.delete_topics([topics.input])

        def recreated() -> bool:
            # Tansu may still refuse the name for a moment after the topic left its list (seen under load).
            try:
                admin.create_topics([NewTopic(topics.input, 3, 1)])
            except TopicAlreadyExistsError:
                return False
            return True

        wait_until(recreated, 30, "the topic to be re-created with 3 partitions")
    admin.close()
    later = {partition: synthetic_articles(10, f"p{partition}", seed=partition) for partition in range(3)}
    for partition, articles in later.items():
        produce_articles(broker.bootstrap_servers, topics.input, articles, partition=partition)
    expected = {a["id"] for articles in later.values() for a in articles}
    wait_until(
        lambda: expected <= set(article_ids(broker.bootstrap_servers, topics.output)),
        120,
        "the articles of the new partitions",
        process,
    )
    stderr = stop(process)
    assert "new partition" in stderr


@on_both_brokers
def test_poison_records_are_dead_lettered_with_their_metadata(broker, topic_name):
    topics, group = Topics(topic_name), topic_name("group")
    topics.create(broker, partitions=1)
    good = synthetic_articles(2, "good")
    huge = synthetic_articles(1, "huge")[0]
    huge["text"] = "\n\n".join([huge["text"]] * 20)
    poison = [
        (b"\xff\xfe\x00\x81 not text", "invalid_encoding"),
        (b'{"id": "x", "text": ', "invalid_json"),
        (b'{"id": ["not", "a", "string"], "text": "t"}', "schema_violation"),
        (orjson.dumps(huge), "payload_too_large"),
        (orjson.dumps({"id": "blank", "text": " \u200b\t "}), "empty_text"),
    ]
    first_ms = recent_record_time_ms()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for number, (value, _) in enumerate(poison):
        producer.send(
            topics.input,
            key=b"key-%d" % number,
            value=value,
            headers=[("trace", b"t-%d" % number)],
            timestamp_ms=first_ms + number,
        )
    for article in good:
        producer.send(topics.input, key=article["id"].encode(), value=orjson.dumps(article))
    producer.flush()

    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirecopy.pipelines.cli",
            "run",
            *topics.args(broker.bootstrap_servers, group),
            # 5 of its 7 records are poison on purpose: the run must not fail by its dead-letter ratio
            "--max-record-bytes",
            "8000",
            "--max-dead-letter-ratio",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    letters = sorted(
        (orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, topics.dead)),
        key=lambda letter: letter["offset"],
    )
    assert [(letter["offset"], letter["reason"]) for letter in letters] == [
        (n, reason) for n, (_, reason) in enumerate(poison)
    ]
    for number, letter in enumerate(letters):
        assert base64.b64decode(letter["payload"]) == poison[number][0]
        assert base64.b64decode(letter["key"]) == b"key-%d" % number
        assert letter["headers"] == [{"key": "trace", "value": base64.b64encode(b"t-%d" % number).decode()}]
        assert letter["timestamp"] == first_ms + number and letter["topic"] == topics.input
    assert sorted(article_ids(broker.bootstrap_servers, topics.output)) == sorted(a["id"] for a in good)
    keys = {record.key for record in read_topic(broker.bootstrap_servers, topics.output)}
    assert keys == {a["id"].encode() for a in good}, "enriched articles are keyed by article id"


@on_both_brokers
def test_an_article_too_large_for_the_output_topic_is_dead_lettered_and_the_run_goes_on(broker, topic_name):
    """Default limits: a 1.2 MB article is a valid input (under 10 MiB) but its enriched event is over the
    producer's 1 MiB; sending it would fail the bundle on every retry. Apache Kafka's own default limit
    (message.max.bytes, 1 MiB) holds for the outputs; the input topic is raised to take the article."""
    topics, group = Topics(topic_name), topic_name("group")
    broker.create_topics([topics.input], configs={"max.message.bytes": str(4 * 1024 * 1024)})
    broker.create_topics([topics.output, topics.clusters, topics.dead])
    before, large, after = synthetic_articles(3, "size")
    large["text"] = "\n\n".join([large["text"]] * 1400)
    values = [orjson.dumps(article) for article in (before, large, after)]
    assert 1_100_000 < len(values[1]) < 10 * 1024 * 1024
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    for value in values:
        producer.send(topics.input, value=value)
    producer.flush()
    producer.close()

    finished = start_pipeline(*topics.args(broker.bootstrap_servers, group))
    _, stderr = finished.communicate(timeout=180)
    assert finished.returncode == 0, stderr[-3000:]
    assert sorted(article_ids(broker.bootstrap_servers, topics.output)) == sorted([before["id"], after["id"]])
    [letter] = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, topics.dead)]
    assert (letter["reason"], letter["stage"], letter["offset"], letter["article_id"]) == (
        "payload_too_large",
        "encode",
        1,
        large["id"],
    )
    assert letter["payload_truncated"] is True and letter["payload_bytes"] == len(values[1])
    assert values[1].startswith(base64.b64decode(letter["payload"]))
    assert committed_total(broker.bootstrap_servers, topics.input, group) == 3, "committed past it: no poison pill"


def test_unreachable_broker_is_a_clear_error_within_seconds(topic_name):
    finished = subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", "run", *Topics(topic_name).args("127.0.0.1:1", "g")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in finished.stderr and "Traceback" not in finished.stderr
    # From the first refused connection to the error, by the log's own clock: the client gives up after its
    # bootstrap timeout (5 s here) instead of retrying. The interpreter's start before it is left out: 15 of
    # the 20 s it took in all on this machine with the suite's workers and other jobs running.
    logged = [dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in _LOG_TIME.findall(finished.stderr)]
    assert len(logged) >= 2, finished.stderr[-3000:]
    assert (logged[-1] - logged[0]).total_seconds() < 20, finished.stderr[-3000:]
