"""Idle streaming soak on Flink: checkpoint size, readers, Kafka connections and worker memory over time.

    .venv/bin/python benchmarks/flink_soak.py [--minutes 10] [--every 30] [--checkpointing-ms 10000] [--after-idle 3]

A Flink session cluster (`deploy/flink.sh start`: one TaskManager, 2 slots), a Python worker pool
(`deploy/worker-pool.sh`) and a Tansu broker are started, as `bench_flink.py` does; a handful of the sample
articles (`pipelines/samples/articles.jsonl`) go to a 3-partition topic, and one `wirecopy run --runner FlinkRunner
--streaming` job with checkpointing reads it from the earliest offset, then sits idle: nothing more is produced.

Every `--every` seconds for `--minutes` from the job's tasks running it prints: the elapsed time, the offsets
committed, the completed checkpoints and the last one's size (Flink REST `/jobs/ID/checkpoints`), the reader's
operator's share of it and how much that grew per checkpoint since the previous sample (apache/beam#27648: a
reader that polls by deferring its remainder leaves a residual in each checkpoint), the live readers (the reader's
counter `live_readers.TOPIC`: instances with their Kafka clients open, summed over the job's subtasks and worker
processes; see `transforms/kafkaio/read.py`, `ReadFn`), the open TCP connections
to the broker's port of the TaskManager and of the Python workers (sockets in /proc/PID/fd matched to
/proc/PID/net/tcp), and the workers' resident memory. At the end it says for each series whether it stayed
bounded: the last third of the samples against the first third (max, and slope per minute by least squares),
and the growth per checkpoint over the whole soak (least squares over checkpoint ids). With `--after-idle N` it
then sends N more sample articles one at a time, each after `AFTER_IDLE_GAP_S` of quiet, and prints how long each
took to come out (enriched or dead letter): an idle reader waits before it polls again, and this is what that
costs. Then it stops the job with Ctrl-C (the CLI cancels it on the cluster) and stops everything.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_flink import flink, rest, tasks_running, wait  # noqa: E402
from wirecopy.pipelines.local_broker import (  # noqa: E402
    LocalBroker,
    committed_offsets,
    free_port,
    produce,
    read_topic,
)

PARTITIONS = 3
SAMPLES = REPO / "pipelines" / "samples" / "articles.jsonl"
# The TCP states of /proc/net/tcp that hold a connection open (everything but LISTEN and CLOSE).
_OPEN_STATES = {"01", "02", "03", "04", "05", "06", "08", "09", "0B"}
# A series is bounded when its last third stays within this much of its first third's max: checkpoint sizes
# move by a few hundred bytes between checkpoints of the same state (timestamps, ids) and RSS by allocator noise.
BOUND_SLACK = 0.10
# The reader's operator: the vertex Flink names "[n]{ReadKafka, ...}", the executable stage that processes the
# splittable DoFn's restrictions and keeps their deferred residuals. (The vertex "Source: Impulse ->
# [n]ReadKafka/{PlanRead, ReadPartitions}" only pairs the plan with its restrictions: its state never changes.)
READER_STEP = "{ReadKafka"
# Quiet before each record sent by --after-idle: longer than the reader's idle resume delay
# (transforms/kafkaio/read.py), so every record reaches a reader that is waiting out its delay.
AFTER_IDLE_GAP_S = 15.0


def descendants(root: int) -> list[int]:
    """The processes under `root` (children, their children, ...), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def connections_to(pid: int, port: int) -> int:
    """Open TCP connections of process `pid` whose remote end is `port` (its socket inodes in /proc/PID/net/tcp*)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:  # the process ended while we looked
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] in _OPEN_STATES and fields[9] in inodes:
                count += 1
    return count


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def taskmanager_pids(cluster: Path) -> list[int]:
    """The TaskManagers' JVMs, from the pid file Flink's scripts write into the cluster's directory."""
    pids = [int(pid) for file in cluster.glob("*taskexecutor.pid") for pid in file.read_text().split()]
    if not pids:  # else its connections would read 0 for want of a process to look at
        raise RuntimeError(f"no TaskManager pid file (*taskexecutor.pid) in {cluster}")
    return pids


def live_readers(address: str, job_id: str) -> int | None:
    """The reader's `live_readers.TOPIC` counter summed over the job's operators and subtasks, as Flink's REST API
    shows it (`wirecopy_live_readers_TOPIC`: Flink writes the dots of a name as underscores; each subtask reports
    the updates of its own bundles); None until a bundle has reported it."""
    total = None
    for vertex in rest(address, f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [m["id"] for m in rest(address, base) if ".wirecopy_live_readers_" in m["id"]]
        if ids:
            values = rest(address, f"{base}?get={','.join(ids)}")
            total = (total or 0) + sum(int(float(m["value"])) for m in values)
    return total


def checkpoint_by_operator(address: str, job_id: str, checkpoint: int) -> dict[str, tuple[int, int]]:
    """Operator name -> (checkpoint id, its state bytes in that checkpoint), from Flink's checkpoint details."""
    details = rest(address, f"/jobs/{job_id}/checkpoints/details/{checkpoint}")
    names = {v["id"]: v["name"] for v in rest(address, f"/jobs/{job_id}")["vertices"]}
    return {names.get(vertex, vertex): (checkpoint, task["state_size"]) for vertex, task in details["tasks"].items()}


def reader_bytes(by_operator: dict[str, tuple[int, int]]) -> int:
    """The reader's operator's state bytes in a checkpoint (see `checkpoint_by_operator`)."""
    sizes = [size for operator, (_, size) in by_operator.items() if READER_STEP in operator]
    if not sizes:
        raise RuntimeError(f"no operator named {READER_STEP} among {sorted(by_operator)}")
    return sum(sizes)


def reader_columns(reader_points: list[tuple[float, float]]) -> str:
    """The reader's state bytes in the last checkpoint and their growth per checkpoint since the sample before."""
    if not reader_points:
        return f"{'-':>10} {'-':>13}"
    if len(reader_points) < 2:
        return f"{reader_points[-1][1]:>10,.0f} {'-':>13}"
    (before_id, before), (now_id, now) = reader_points[-2:]
    return f"{now:>10,.0f} {(now - before) / (now_id - before_id):>+13,.0f}"


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, value) points."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (v - mean_v) for x, v in points) / spread if spread else 0.0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    return 60 * slope(points)


def outputs(bootstrap_servers: str, topics: dict[str, str]) -> int:
    """Enriched articles and dead letters written so far."""
    return sum(len(read_topic(bootstrap_servers, topics[role])) for role in ("enriched", "dead"))


def after_idle_latencies(bootstrap_servers: str, topics: dict[str, str], values: list[bytes]) -> list[float]:
    """Seconds from producing each of `values`, one at a time after `AFTER_IDLE_GAP_S` of quiet, to its output."""
    latencies = []
    for value in values:
        time.sleep(AFTER_IDLE_GAP_S)
        before = outputs(bootstrap_servers, topics)
        sent = time.monotonic()
        produce(bootstrap_servers, topics["raw"], [value])
        while outputs(bootstrap_servers, topics) == before:
            if time.monotonic() - sent > 120:
                raise RuntimeError("a record sent after an idle period did not come out within 120 s")
            time.sleep(0.1)
        latencies.append(time.monotonic() - sent)
        print(f"  a record sent after {AFTER_IDLE_GAP_S:.0f} s idle came out after {latencies[-1]:.1f} s", flush=True)
    return latencies


def verdict(name: str, points: list[tuple[float, float]]) -> str:
    third = max(len(points) // 3, 1)
    first, last = points[:third], points[-third:]
    first_max, last_max = max(v for _, v in first), max(v for _, v in last)
    bounded = last_max <= first_max * (1 + BOUND_SLACK) + 1
    return (
        f"  {name:<26} first third max {first_max:>12,.1f} slope {slope_per_minute(first):>+10,.1f}/min;"
        f" last third max {last_max:>12,.1f} slope {slope_per_minute(last):>+10,.1f}/min: "
        f"{'bounded' if bounded else 'GREW'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the job sits idle (default 10)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--records", type=int, default=5, help="sample articles produced before the job (default 5)")
    parser.add_argument(
        "--checkpointing-ms", type=int, default=10_000, help="the job's --checkpointing_interval (default 10000)"
    )
    parser.add_argument(
        "--after-idle",
        type=int,
        default=0,
        metavar="N",
        help="after the soak, send N more sample articles one at a time and time each to its output (default 0)",
    )
    args = parser.parse_args()
    logging.getLogger("kafka").setLevel(logging.ERROR)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, shared (noisy); checkpoints every {args.checkpointing_ms} ms")

    jar = flink("job-server")
    directory = Path(tempfile.mkdtemp(prefix="flink-soak-"))
    print(f"logs (removed when the run succeeds): {directory}")
    pool_port = free_port()
    pool_log = open(directory / "worker-pool.log", "wb")
    pool = subprocess.Popen(
        ["bash", str(REPO / "deploy" / "worker-pool.sh"), str(pool_port)],
        cwd=REPO,
        stdout=pool_log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    cluster = directory / "cluster"
    address = flink("start", str(cluster))
    job: subprocess.Popen | None = None
    try:
        with LocalBroker() as broker:
            tag = f"soak-{uuid.uuid4().hex[:8]}"
            topics = {role: f"{tag}.{role}" for role in ("raw", "enriched", "clusters", "dead")}
            broker.create_topics([topics["raw"]], partitions=PARTITIONS)
            broker.create_topics([topics["enriched"], topics["clusters"], topics["dead"]])
            samples = SAMPLES.read_bytes().splitlines()
            values = samples[: args.records]
            after_idle = samples[args.records : args.records + args.after_idle]
            produce(broker.bootstrap_servers, topics["raw"], values)
            group = f"{tag}-group"
            command = [
                *(sys.executable, "-m", "wirecopy.pipelines.cli", "run"),
                *("--bootstrap-servers", broker.bootstrap_servers, "--input-topic", topics["raw"]),
                *("--group-id", group, "--output-topic", topics["enriched"]),
                *("--cluster-topic", topics["clusters"], "--dead-letter-topic", topics["dead"]),
                *("--start-from", "earliest", "--streaming"),
                *("--runner", "FlinkRunner", "--flink_master", address, "--flink_version", "1.19"),
                *("--flink_job_server_jar", jar, "--environment_type", "EXTERNAL"),
                *("--environment_config", f"127.0.0.1:{pool_port}"),
                *("--checkpointing_interval", str(args.checkpointing_ms)),
            ]
            print(f"job: {' '.join(command[1:])}")
            log = directory / "cli.log"
            with open(log, "wb") as output:
                job = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
            started = wait(lambda: tasks_running(address), job, log, "the job's tasks running")
            (job_id,) = [j["jid"] for j in rest(address, "/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
            print(f"Flink job {job_id}: tasks running; {len(values)} records on the input topic, then nothing")

            series: dict[str, list[tuple[float, float]]] = {}
            print(
                f"\n  {'elapsed':>7} {'committed':>9} {'checkpoints':>11} {'last ckpt B':>11}"
                f" {'reader B':>10} {'reader B/ckpt':>13} {'live readers':>12}"
                f" {'TM conns':>8} {'worker conns':>12} {'workers':>7} {'worker RSS MiB':>14}"
            )
            reader_points: list[tuple[float, float]] = []  # (checkpoint id, the reader's state bytes in it)
            first_checkpoint: dict[str, tuple[int, int]] | None = None
            last_checkpoint: dict[str, tuple[int, int]] = {}
            while (elapsed := time.monotonic() - started) <= args.minutes * 60:
                if job.poll() is not None:
                    raise RuntimeError(f"wirecopy exited {job.returncode}: {log.read_text(errors='replace')[-3000:]}")
                committed = sum(
                    o or 0 for o in committed_offsets(broker.bootstrap_servers, topics["raw"], group).values()
                )
                checkpoints = rest(address, f"/jobs/{job_id}/checkpoints")
                last = (checkpoints.get("latest") or {}).get("completed") or {}
                size = last.get("state_size", 0)
                readers = live_readers(address, job_id)
                workers = descendants(pool.pid)
                tm_connections = sum(connections_to(pid, broker.port) for pid in taskmanager_pids(cluster))
                worker_connections = sum(connections_to(pid, broker.port) for pid in workers)
                rss = sum(rss_mib(pid) for pid in workers)
                if last:
                    last_checkpoint = checkpoint_by_operator(address, job_id, last["id"])
                    first_checkpoint = first_checkpoint or last_checkpoint
                    if not reader_points or reader_points[-1][0] != last["id"]:
                        reader_points.append((last["id"], reader_bytes(last_checkpoint)))
                print(
                    f"  {elapsed:>6.0f}s {committed:>9} {checkpoints['counts']['completed']:>11} {size:>11,}"
                    f" {reader_columns(reader_points)} {'-' if readers is None else readers:>12}"
                    f" {tm_connections:>8} {worker_connections:>12} {len(workers):>7}"
                    f" {rss:>14.1f}",
                    flush=True,
                )
                if last:  # before the first checkpoint completes there is no size to compare
                    series.setdefault("last checkpoint bytes", []).append((elapsed, size))
                if readers is not None:
                    series.setdefault("live readers", []).append((elapsed, readers))
                for name, value in (
                    ("TaskManager connections", tm_connections),
                    ("worker connections", worker_connections),
                    ("worker RSS MiB", rss),
                ):
                    series.setdefault(name, []).append((elapsed, value))
                time.sleep(max(0.0, args.every - (time.monotonic() - started - elapsed)))

            print("\nbounded? (first third of the samples vs the last third)")
            for name, points in series.items():
                print(verdict(name, points))
            print("\nstate bytes per operator, the first completed checkpoint seen and the last")
            for operator, (checkpoint, size) in (first_checkpoint or {}).items():
                later, later_size = last_checkpoint.get(operator, (0, 0))
                print(f"  {operator[:70]:<70} #{checkpoint}: {size:>10,}  #{later}: {later_size:>10,}")
            if reader_points:
                print(
                    f"\nthe reader's state grew {slope(reader_points):+,.0f} B per checkpoint over the soak (least"
                    f" squares over {len(reader_points)} samples, checkpoints #{reader_points[0][0]} to"
                    f" #{reader_points[-1][0]})"
                )
            if after_idle:
                print(f"\nafter idle: {len(after_idle)} records sent one at a time")
                latencies = after_idle_latencies(broker.bootstrap_servers, topics, after_idle)
                print(f"  latency min {min(latencies):.1f} s, max {max(latencies):.1f} s")
    finally:
        if job is not None and job.poll() is None:
            job.send_signal(signal.SIGINT)
            try:
                job.wait(timeout=120)
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait()
            cancelled = [
                line for line in (directory / "cli.log").read_text(errors="replace").splitlines() if "cancel" in line
            ]
            print(f"stopped the job: {cancelled[-1] if cancelled else 'Ctrl-C sent; the CLI logged no cancel'}")
        flink("stop", str(cluster))
        pool.terminate()
        pool.wait(timeout=30)
        pool_log.close()
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
