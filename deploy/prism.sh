#!/usr/bin/env bash
# Builds Beam's Prism runner for the installed apache-beam version from the Go
# module proxy (Beam's DirectRunner would download a release binary from
# GitHub, which CI cannot reach), with the fixes in deploy/prism-patches
# applied, and prints the binary's path. Cached per version and set of
# patches: the first build takes a few minutes, later calls print the path at
# once.
#
#   deploy/prism.sh [PYTHON]      # PYTHON: the venv's interpreter (default .venv/bin/python)
#   wirecopy run --runner PrismRunner --prism_location "$(deploy/prism.sh)" ...
#
# split-keeps-held-keys.patch: when Prism splits a running bundle, it released
# the key of every element it moved to the residual, even a key the bundle's
# primary still held, so another bundle ran that key at the same time and one
# bundle's state writes overwrote the other's (Prism 2.77.0; 1,020 articles in
# file mode lost 1-5 of them per run; tests/test_runners_prism.py has the
# small reproduction).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-.venv/bin/python}
cache=${WIRECOPY_CACHE:-$HOME/.cache/wirecopy}
beam_version=$("$python" -c 'from importlib.metadata import version; print(version("apache-beam"))')
patches=("$here"/prism-patches/*.patch)
patched=$(cat "${patches[@]}" | sha256sum | cut -c1-12)
binary_dir="$cache/prism-$beam_version-patched-$patched"
if [[ ! -x "$binary_dir/prism" ]]; then
  command -v go >/dev/null || { echo "deploy/prism.sh: needs Go (https://go.dev/dl) to build Prism $beam_version" >&2; exit 1; }
  echo "building Prism $beam_version with deploy/prism-patches into $binary_dir (a few minutes once)" >&2
  module="github.com/apache/beam/sdks/v2@v$beam_version"
  source=$(GOFLAGS=-mod=mod go mod download -json "$module" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$source/go" "$source/go.mod" "$source/go.sum" "$work/"
  chmod -R u+w "$work"
  for patch in "${patches[@]}"; do
    patch --quiet --strip 1 --directory "$work" < "$patch"
  done
  rm -rf "$binary_dir.partial" && mkdir -p "$binary_dir.partial"
  (cd "$work" && go build -o "$binary_dir.partial/prism" ./go/cmd/prism) >&2
  rm -rf "$binary_dir" && mv "$binary_dir.partial" "$binary_dir"
fi
echo "$binary_dir/prism"
