#!/usr/bin/env bash
# A local Apache Flink session cluster (one JobManager, one TaskManager) on
# loopback, from Flink's own PyPI wheels: apache-flink-libraries (lib/ jars)
# and apache-flink (bin/, conf/). The wheels are downloaded with
# `pip download --no-deps` and unzipped into a cache, never pip-installed:
# apache-flink pins apache-beam<=2.61, which would break the project's venv.
#
#   deploy/flink.sh fetch             # download and unzip once; prints FLINK_HOME
#   deploy/flink.sh start DIR         # start a cluster whose config, logs and pids live in DIR;
#                                     # prints its REST address HOST:PORT (the --flink_master)
#   deploy/flink.sh stop DIR          # stop that cluster
#   deploy/flink.sh taskmanager DIR   # start one more TaskManager (after one was killed)
#
# Needs Java 11, 17 or 21 on PATH (or JAVA_HOME) and Python 3.11 with pip.
set -euo pipefail
flink_version=2.2.1
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
  for wheel in "$wheels"/apache_flink_libraries-"$flink_version"-*.whl "$wheels"/apache_flink-"$flink_version"-*.whl; do
    "$python" -m zipfile -e "$wheel" "$unpacked.partial"
  done
  chmod +x "$unpacked.partial"/pyflink/bin/*
  rm -rf "$unpacked" && mv "$unpacked.partial" "$unpacked"
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
  rpc:
    port: 0
  data:
    port: 0
  memory:
    process:
      size: 1024m
parallelism:
  default: 1
rest:
  address: 127.0.0.1
  bind-address: 127.0.0.1
  port: $rest_port
blob:
  server:
    port: 0
execution:
  checkpointing:
    dir: file://$dir/checkpoints
    savepoint-dir: file://$dir/savepoints
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 10
    delay: 2 s
YAML
  echo "127.0.0.1:$rest_port" > "$dir/address"
}

wait_for_taskmanager() {  # DIR: until the REST API answers and a TaskManager has registered
  local address; address=$(cat "$1/address")
  for _ in $(seq 120); do
    if "$python" - "$address" <<'PY' 2>/dev/null; then return; fi
import json, sys, urllib.request
overview = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/overview", timeout=2))
sys.exit(0 if overview["taskmanagers"] >= 1 else 1)
PY
    sleep 1
  done
  echo "deploy/flink.sh: no TaskManager registered at $address within 120 s; logs in $1/log" >&2
  return 1
}

case ${1:-} in
  fetch) fetch; echo "$flink_home" ;;
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
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
