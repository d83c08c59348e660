"""Flink: what the CLI refuses up front, and the local session cluster of deploy/flink.sh.

Running the pipeline on that cluster needs Beam's Flink job server
(org.apache.beam:beam-runners-flink-2.2-job-server), which the package
registry this project builds from does not serve, in any version: see
deploy/README.md.
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KAFKA_ARGS = [
    "--bootstrap-servers",
    "127.0.0.1:1",
    "--input-topic",
    "a",
    "--output-topic",
    "b",
    "--cluster-topic",
    "c",
    "--dead-letter-topic",
    "d",
]


def wirecopy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "runner_args, reason",
    [
        (
            ["--runner", "FlinkRunner", "--flink_master", "127.0.0.1:1", "--checkpointing_interval", "5000"],
            "Kafka mode on Flink needs --streaming",
        ),
        (
            ["--runner", "FlinkRunner", "--flink_master", "127.0.0.1:1", "--streaming"],
            "Kafka mode on Flink needs --checkpointing_interval",
        ),
        (
            ["--runner", "flink", "--streaming", "--checkpointing_interval", "-1"],
            "Kafka mode on Flink needs --checkpointing_interval",
        ),
        (["--runner", "SparkRunner", "--streaming"], "Kafka mode cannot run on Spark"),
    ],
    ids=["flink-batch", "flink-no-checkpoints", "flink-checkpoints-off", "spark"],
)
def test_kafka_mode_a_runner_would_not_commit_offsets_on_is_refused_in_one_line(runner_args, reason):
    finished = wirecopy(*KAFKA_ARGS, *runner_args)
    assert finished.returncode == 2, finished.stderr[-2000:]
    errors = [line for line in finished.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and reason in errors[0], finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr and "cannot reach Kafka" not in finished.stderr


def flink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "flink.sh"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory):
    """One Flink 2.2.1 session cluster for the session (JobManager ~250 MiB, TaskManager ~400 MiB)."""
    directory = tmp_path_factory.mktemp("flink")
    started = flink("start", str(directory))
    try:
        assert started.returncode == 0, (
            f"deploy/flink.sh start failed (make runners fetches Flink): {started.stderr[-2000:]}"
        )
        yield started.stdout.strip().splitlines()[-1], directory
    finally:
        stopped = flink("stop", str(directory))
        assert stopped.returncode == 0, stopped.stderr[-2000:]


@pytest.mark.flink
def test_the_session_cluster_from_the_pypi_wheels_runs_a_taskmanager_and_stops(flink_cluster):
    address, directory = flink_cluster
    assert address.startswith("127.0.0.1:")
    overview = json.load(urllib.request.urlopen(f"http://{address}/overview", timeout=10))
    assert overview["flink-version"] == "2.2.1" and overview["taskmanagers"] == 1 and overview["slots-total"] == 2
    config = json.load(urllib.request.urlopen(f"http://{address}/jobmanager/config", timeout=10))
    settings = {entry["key"]: entry["value"] for entry in config}
    assert settings["execution.checkpointing.dir"] == f"file://{directory}/checkpoints"
    assert settings["restart-strategy.type"] == "fixed-delay"
