"""Stories through the command line: the same memberships from files and from Kafka with 1 and 3 partitions."""

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from test_stories import ORDER_DEPENDENT, _without  # tests/ is on sys.path (pytest rootdir conftest)
from wirecopy.pipelines.demo import sample_lines
from wirecopy.pipelines.local_broker import produce, read_topic
from wirecopy.transforms.stories import StoryTable

REPO = Path(__file__).resolve().parents[1]


def wirecopy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def memberships(records) -> set[frozenset[str]]:
    table = StoryTable()
    for record in records:
        table.apply(record)
    return {frozenset(m["article_id"] for m in members) for members in table.stories().values()}


@pytest.fixture(scope="module")
def file_mode_stories(sample_run) -> set[frozenset[str]]:
    """The stories of conftest's file-mode run over the samples."""
    records = [
        orjson.loads(line) for line in sample_run.with_name("enriched.stories.jsonl").read_bytes().splitlines() if line
    ]
    found = memberships(records)
    assert sum(len(members) > 1 for members in found) >= 9, "the samples' stories with copies"
    return found


@pytest.mark.broker
# Also on Apache Kafka, with 3 partitions: its compacted story topic refuses a record without a key, which
# Tansu takes. One partition count is enough for that.
@pytest.mark.parametrize(
    "partitions, broker_kind",
    [(1, "tansu"), (3, "tansu"), pytest.param(3, "apache_kafka", marks=pytest.mark.apache_kafka)],
)
def test_kafka_mode_gives_the_stories_of_file_mode_whatever_the_partition_count(
    broker, topic_name, partitions, file_mode_stories, kafka_args
):
    topics = {role: topic_name(role) for role in ("in", "out", "clusters", "dead", "stories")}
    broker.create_topics([topics["in"]], partitions=partitions)
    broker.create_topics([topics["out"], topics["clusters"], topics["dead"]])
    broker.create_topics([topics["stories"]], configs={"cleanup.policy": "compact"})
    produce(broker.bootstrap_servers, topics["in"], sample_lines())
    finished = wirecopy("run", *kafka_args(broker, topics, f"stories-{partitions}"), "--start-from", "earliest")
    assert finished.returncode == 0, finished.stderr[-3000:]
    records = [orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, topics["stories"])]
    if partitions == 1:  # the file's order: the same stories exactly
        assert memberships(records) == file_mode_stories
    else:  # partitions interleave in any order: the samples' one order-dependent article is left out
        assert _without(memberships(records), ORDER_DEPENDENT) == _without(file_mode_stories, ORDER_DEPENDENT)
