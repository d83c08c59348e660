#!/usr/bin/env bash
# A local Apache Flink session cluster (one JobManager, one TaskManager) on
# loopback, from Flink's own PyPI packages: apache-flink-libraries (lib/ jars)
# and apache-flink (bin/, conf/). They are downloaded with
# `pip download --no-deps` and unpacked into a cache, never pip-installed:
# apache-flink pins apache-beam<=2.61, which would break the project's venv.
# And Beam's Flink job server for it, from Maven Central (flink-job-server/pom.xml), with our patch of three of
# its classes compiled in (flink-job-server/patches: apache/beam#27648).
#
#   deploy/flink.sh fetch             # download and unpack once; prints FLINK_HOME
#   deploy/flink.sh job-server        # assemble the job server once; prints its jar (--flink_job_server_jar)
#   deploy/flink.sh start DIR         # start a cluster whose config, logs and pids live in DIR;
#                                     # prints its REST address HOST:PORT (the --flink_master)
#   deploy/flink.sh stop DIR          # stop that cluster
#   deploy/flink.sh taskmanager DIR   # start one more TaskManager (after one was killed)
#
# Needs Java 11 or 17 on PATH (or JAVA_HOME), Python 3.11 with pip, and Maven with a JDK for job-server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pom="$here/flink-job-server/pom.xml"
# Our patch of Beam classes (apache/beam#27648; see deploy/README.md): sources by package, compiled into the job server.
patches="$here/flink-job-server/patches"
pom_property() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$pom"; }
beam_version=$(pom_property beam.version)
flink_minor=$(pom_property flink.minor)
# The newest 1.19 release: Beam's Flink runner at beam_version supports Flink 1.19 at most among the versions
# the registry serves it for (see the pom).
flink_version=$flink_minor.3
cache=${WIRECOPY_CACHE:-$HOME/.cache/wirecopy}
flink_home="$cache/flink-$flink_version/pyflink"
python=${PYTHON:-python3}

fetch() {
  [[ -x "$flink_home/bin/start-cluster.sh" ]] && return
  local wheels="$cache/wheels" unpacked="$cache/flink-$flink_version"
  mkdir -p "$wheels"
  "$python" -m pip download --quiet --no-deps --dest "$wheels" \
    "apache-flink-libraries==$flink_version" "apache-flink==$flink_version" >&2
  rm -rf "$unpacked.partial" && mkdir -p "$unpacked.partial"
  # apache-flink is a wheel (bin/, conf/); apache-flink-libraries 1.19 is a source archive whose deps/ holds
  # lib/, opt/, plugins/ and bin/'s jar: both go into one FLINK_HOME.
  "$python" -m zipfile -e "$wheels"/apache_flink-"$flink_version"-*.whl "$unpacked.partial"
  tar -xzf "$wheels/apache-flink-libraries-$flink_version.tar.gz" -C "$unpacked.partial"
  cp -r "$unpacked.partial/apache-flink-libraries-$flink_version/deps/." "$unpacked.partial/pyflink/"
  rm -rf "$unpacked.partial/apache-flink-libraries-$flink_version"
  chmod +x "$unpacked.partial"/pyflink/bin/*
  rm -rf "$unpacked" && mv "$unpacked.partial" "$unpacked"
}

job_server() {  # the job server's jars, our patched classes, and a launcher jar naming them: java -jar LAUNCHER runs FlinkJobServerDriver
  local dir="$cache/flink-job-server-$beam_version-flink-$flink_minor-patch-$(patch_hash)"
  if [[ ! -f "$dir/job-server.jar" ]]; then
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    mvn --batch-mode --quiet -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir.partial/lib" >&2
    # Beam's own classes are Java 8 class files (version 52): the patched ones are compiled alike, against the
    # very jars they replace classes of.
    (cd "$patches" && find . -name '*.java' -print0 | xargs -0 javac --release 8 -Xlint:-options -nowarn \
      -cp "$dir.partial/lib/*" -d "$dir.partial/patches") >&2
    jar --create --file "$dir.partial/patches.jar" -C "$dir.partial/patches" . && rm -r "$dir.partial/patches"
    # patches.jar first: a class loader takes a class from the first jar on its path that holds it. The job server
    # stages its class path to the cluster in this order, and the TaskManagers run ours too: a job's checkpoints
    # hold the patch's state (sdf_checkpoint_residuals), and its reader's state stops growing (deploy/README.md).
    # A manifest line holds at most 72 bytes: longer values go on continuation lines starting with a space.
    # Add-Opens: what Flink's own JVM options open for its client on Java 17.
    { echo "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver"
      echo "Class-Path: patches.jar $(cd "$dir.partial" && ls lib/*.jar | tr '\n' ' ')" | fold -b -w 70 | sed '2,$s/^/ /'
      echo "Add-Opens: java.base/java.lang java.base/java.util java.base/java.nio java.base/sun.nio.ch java.base/java.io java.base/java.net" \
        | fold -b -w 70 | sed '2,$s/^/ /'
    } > "$dir.partial/manifest.txt"
    (cd "$dir.partial" && jar --create --file job-server.jar --manifest manifest.txt)
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir/job-server.jar"
}

patch_hash() {  # of the patch's sources, their paths and contents: a changed patch builds a job server of its own
  (cd "$patches" && find . -name '*.java' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

configure() {  # DIR: a config of our own, every port free, small memory (JM ~250 MiB, TM ~400 MiB resident)
  local dir=$1 rest_port rpc_port
  rest_port=$(free_port); rpc_port=$(free_port)
  mkdir -p "$dir/conf" "$dir/log" "$dir/checkpoints" "$dir/savepoints"
  cp "$flink_home"/conf/log4j*.properties "$dir/conf/"
  echo localhost > "$dir/conf/masters"; echo localhost > "$dir/conf/workers"
  local java_opts
  java_opts=$(grep -m1 'all: --add-exports' "$flink_home/conf/config.yaml" | sed 's/^ *all: //')
  cat > "$dir/conf/config.yaml" <<YAML
env:
  java:
    opts:
      all: $java_opts
  pid:
    dir: $dir
jobmanager:
  bind-host: 127.0.0.1
  rpc:
    address: 127.0.0.1
    port: $rpc_port
  memory:
    process:
      size: 768m
  execution:
    failover-strategy: region
taskmanager:
  bind-host: 127.0.0.1
  host: 127.0.0.1
  numberOfTaskSlots: 2
  # A batch job's every result partition takes 512 buffers by default (sort shuffle), and Beam's batch
  # translation of the pipeline has dozens: the samples' file-mode job failed with "required 512, but
  # only 507 available" at 64 MiB of network memory, and with 508 of 4,096 at 128 MiB.
  network:
    sort-shuffle:
      min-buffers: 64
  rpc:
    port: 0
  data:
    port: 0
  memory:
    process:
      size: 1280m
    network:
      min: 128m
      max: 128m
    # Beam's portable operators keep their state on the heap (no RocksDB here): little managed memory.
    managed:
      size: 64m
parallelism:
  default: 1
# How often the REST API's metrics are fetched from the TaskManagers (default 10 s): a counter read there
# (the tests read wirecopy_articles_enriched) lags the job by up to this much.
metrics:
  fetcher:
    update-interval: 1000
rest:
  address: 127.0.0.1
  bind-address: 127.0.0.1
  port: $rest_port
blob:
  server:
    port: 0
state:
  checkpoints:
    dir: file://$dir/checkpoints
  savepoints:
    dir: file://$dir/savepoints
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 10
    delay: 2 s
YAML
  echo "127.0.0.1:$rest_port" > "$dir/address"
}

wait_for_taskmanager() {  # DIR: until the REST API answers and a TaskManager has registered its slots
  local address; address=$(cat "$1/address")
  for _ in $(seq 120); do
    if "$python" - "$address" <<'PY' 2>/dev/null; then return; fi
import json, sys, urllib.request
overview = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/overview", timeout=2))
# A TaskManager counts before its slots do (seen: 1 TaskManager, 0 slots).
sys.exit(0 if overview["taskmanagers"] >= 1 and overview["slots-total"] >= 1 else 1)
PY
    sleep 1
  done
  echo "deploy/flink.sh: no TaskManager registered at $address within 120 s; logs in $1/log" >&2
  return 1
}

case ${1:-} in
  fetch) fetch; echo "$flink_home" ;;
  job-server) job_server ;;
  start)
    dir=$(realpath -m "${2:?usage: deploy/flink.sh start DIR}")
    fetch
    configure "$dir"
    FLINK_CONF_DIR="$dir/conf" FLINK_LOG_DIR="$dir/log" "$flink_home/bin/start-cluster.sh" >&2
    wait_for_taskmanager "$dir"
    cat "$dir/address" ;;
  taskmanager)
    dir=$(realpath -m "${2:?usage: deploy/flink.sh taskmanager DIR}")
    FLINK_CONF_DIR="$dir/conf" FLINK_LOG_DIR="$dir/log" "$flink_home/bin/taskmanager.sh" start >&2 ;;
  stop)
    dir=$(realpath -m "${2:?usage: deploy/flink.sh stop DIR}")
    FLINK_CONF_DIR="$dir/conf" FLINK_LOG_DIR="$dir/log" "$flink_home/bin/stop-cluster.sh" >&2 ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
