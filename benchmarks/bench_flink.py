"""Flink throughput at parallelism 1 and 2: `wirecopy run --runner FlinkRunner --streaming` on a local session cluster.

    .venv/bin/python benchmarks/bench_flink.py [--shared ../shared] [--bases-per-language 10] [--parallelism 1 2]

The labelled set of `syndication_labelled.py` (real news from `../shared/corpus`, wire stories with their
syndicated copies and same-topic different stories) is produced as raw articles to a 3-partition topic on the
local broker (Tansu). A Flink session cluster (`deploy/flink.sh start`: one TaskManager, 2 slots) and a Python
worker pool (`deploy/worker-pool.sh`) are started; then, per parallelism P, one streaming job reads the topic
from the earliest offset with a group and output topics of its own (`--parallelism P --sdk_worker_parallelism P`,
checkpoints every second, FlinkRunner starting the job server from `deploy/flink.sh job-server`'s jar), and is
stopped with Ctrl-C once every offset is committed.

Prints, per parallelism, the seconds from the CLI's start to the job's tasks running (job server start, the
upload of its jars, scheduling) and from then to every offset committed (reading, every stage, the sink and the
commit after the checkpoint that covers the last record), and articles per second over the latter.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from benchmarks.syndication_labelled import build  # noqa: E402
from wirecopy.pipelines.local_broker import LocalBroker, committed_offsets, free_port, produce  # noqa: E402

PARTITIONS = 3
CHECKPOINT_MS = 1000
JOB_TIMEOUT_S = 1800.0


def flink(*args: str) -> str:
    """`deploy/flink.sh ARGS`: its last line of output (an address or a path)."""
    finished = subprocess.run(
        ["bash", str(REPO / "deploy" / "flink.sh"), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""


def rest(address: str, path: str):
    return json.load(urllib.request.urlopen(f"http://{address}{path}", timeout=10))


def tasks_running(address: str) -> bool:
    jobs = [job for job in rest(address, "/jobs/overview")["jobs"] if job["state"] == "RUNNING"]
    return bool(jobs) and all(v["status"] == "RUNNING" for v in rest(address, f"/jobs/{jobs[0]['jid']}")["vertices"])


def wait(condition, process: subprocess.Popen, log: Path, what: str) -> float:
    """Poll `condition` until it holds (fail when the CLI exits or after JOB_TIMEOUT_S); the time it first held."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached; the CLI's log:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    return time.monotonic()


def run_at(
    parallelism: int, broker: LocalBroker, source: str, count: int, address: str, pool: str, jar: str, log: Path
):
    """One job at `parallelism`: seconds to its tasks running, and from then to every offset committed."""
    tag = f"bench-flink-{uuid.uuid4().hex[:8]}"
    outputs = {role: f"{tag}.{role}" for role in ("enriched", "clusters", "dead")}
    broker.create_topics(list(outputs.values()), partitions=PARTITIONS)
    group = f"{tag}-group"
    command = [
        *(sys.executable, "-m", "wirecopy.pipelines.cli", "run"),
        *("--bootstrap-servers", broker.bootstrap_servers, "--input-topic", source, "--group-id", group),
        *("--output-topic", outputs["enriched"], "--cluster-topic", outputs["clusters"]),
        *("--dead-letter-topic", outputs["dead"], "--start-from", "earliest", "--streaming"),
        *("--runner", "FlinkRunner", "--flink_master", address, "--flink_version", "1.19"),
        *("--flink_job_server_jar", jar, "--environment_type", "EXTERNAL", "--environment_config", pool),
        *("--checkpointing_interval", str(CHECKPOINT_MS), "--parallelism", str(parallelism)),
        *("--sdk_worker_parallelism", str(parallelism)),
    ]
    started = time.monotonic()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    try:
        running = wait(lambda: tasks_running(address), process, log, "the job's tasks running")

        def committed() -> int:
            return sum(o or 0 for o in committed_offsets(broker.bootstrap_servers, source, group).values())

        done = wait(lambda: committed() == count, process, log, f"{count} offsets committed")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return running - started, done - running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--bases-per-language", type=int, default=10, help="wire stories per language (default 10)")
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2], help="one job each (default 1 2)")
    args = parser.parse_args()
    logging.getLogger("kafka").setLevel(logging.ERROR)

    labelled, _ = build(args.shared, bases_per_language=args.bases_per_language)
    values = [
        orjson.dumps({"id": item.article_id, "title": item.title, "text": item.text, "published_at": item.published_at})
        for item in labelled
    ]
    count = len(values)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"data: {count:,} raw articles, {PARTITIONS} partitions; machine: {os.cpu_count()} cores, shared (noisy)")
    jar = flink("job-server")
    directory = Path(tempfile.mkdtemp(prefix="bench-flink-"))
    port = free_port()
    pool_log = open(directory / "worker-pool.log", "wb")
    pool = subprocess.Popen(
        ["bash", str(REPO / "deploy" / "worker-pool.sh"), str(port)],
        cwd=REPO,
        stdout=pool_log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    address = flink("start", str(directory / "cluster"))
    try:
        with LocalBroker() as broker:
            source = "bench.raw"
            broker.create_topics([source], partitions=PARTITIONS)
            produce(broker.bootstrap_servers, source, values, [item.article_id.encode() for item in labelled])
            print(f"\n  {'parallelism':>11} {'to running s':>12} {'to committed s':>14} {'articles/s':>10}")
            for parallelism in args.parallelism:
                log = directory / f"cli-p{parallelism}.log"
                submit, process = run_at(parallelism, broker, source, count, address, f"127.0.0.1:{port}", jar, log)
                print(f"  {parallelism:>11} {submit:>12.1f} {process:>14.1f} {count / process:>10.1f}", flush=True)
    finally:
        flink("stop", str(directory / "cluster"))
        pool.terminate()
        pool.wait(timeout=30)
        pool_log.close()
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
