#!/usr/bin/env bash
# Replays deploy/Dockerfile's install steps without Docker: a fresh Python 3.11
# venv with the apache-beam version of the SDK image, then the Dockerfile's
# `pip install .` and import check, from a copy holding only what the
# Dockerfile COPYs (so a file missing from its COPY lines shows up here).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
beam_version=$(sed -n 's/^ARG BEAM_VERSION=//p' "$repo/deploy/Dockerfile")
mkdir "$work/src"
for copied in $(sed -n 's/^COPY \(.*\) [^ ]*$/\1/p' "$repo/deploy/Dockerfile"); do
  cp -r "$repo/$copied" "$work/src/"
done
${PYTHON:-python3.11} -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "apache-beam==$beam_version"   # what the SDK image has
(cd "$work/src" && "$work/venv/bin/pip" install --quiet --no-cache-dir . && "$work/venv/bin/python" -c "import wirecopy.pipelines.enrich")
"$work/venv/bin/wirecopy" run --input-jsonl "$work/src/pipelines/samples/articles.jsonl" --output-jsonl "$work/out.jsonl" 2>&1 | tail -1
echo "deploy/Dockerfile install steps: OK (apache-beam $beam_version, $(wc -l < "$work/out.jsonl") enriched articles from the samples)"
