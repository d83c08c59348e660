#!/usr/bin/env bash
# Builds Beam's Prism runner for the installed apache-beam version from the Go
# module proxy (Beam's DirectRunner would download a release binary from
# GitHub, which CI cannot reach) and prints the binary's path. Cached: the
# first build takes a few minutes, later calls print the path at once.
#
#   deploy/prism.sh [PYTHON]      # PYTHON: the venv's interpreter (default .venv/bin/python)
#   wirecopy run --runner PrismRunner --prism_location "$(deploy/prism.sh)" ...
set -euo pipefail
python=${1:-.venv/bin/python}
cache=${WIRECOPY_CACHE:-$HOME/.cache/wirecopy}
beam_version=$("$python" -c 'from importlib.metadata import version; print(version("apache-beam"))')
binary_dir="$cache/prism-$beam_version"
if [[ ! -x "$binary_dir/prism" ]]; then
  command -v go >/dev/null || { echo "deploy/prism.sh: needs Go (https://go.dev/dl) to build Prism $beam_version" >&2; exit 1; }
  echo "building Prism $beam_version into $binary_dir (go install, a few minutes once)" >&2
  GOBIN="$binary_dir" go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$beam_version" >&2
fi
echo "$binary_dir/prism"
