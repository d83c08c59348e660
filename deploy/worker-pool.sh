#!/usr/bin/env bash
# The Python worker pool a portable runner's EXTERNAL environment connects
# to (Flink's TaskManagers with --environment_type=EXTERNAL
# --environment_config=HOST:PORT). Each job's SDK worker is started by the
# pool as `python -m apache_beam.runners.worker.sdk_worker_main`, with the
# first `python` on PATH: the venv's, so wirecopy is importable there.
#
#   PYTHON=.venv/bin/python deploy/worker-pool.sh PORT
#
# It listens on every interface: run it beside the TaskManager (same pod,
# same host), not on a public address.
set -euo pipefail
port=${1:?usage: deploy/worker-pool.sh PORT}
python=${PYTHON:-.venv/bin/python}
PATH="$(cd "$(dirname "$python")" && pwd):$PATH" exec "$python" -m apache_beam.runners.worker.worker_pool_main \
  --service_port="$port"
