#!/usr/bin/env bash
# Prints the path of a promtool binary, building it first when it is not cached.
#
# promtool comes from the prometheus Go module through the Go module proxy (there is no prebuilt
# binary to download here), at a pinned version so that rule tests behave the same on every machine.
# The first build takes several minutes (the module pulls in most of Prometheus); later calls only
# check the cached binary. Needs Go 1.24 or newer.
#
# Usage: scripts/promtool.sh            print the path of promtool
#        scripts/promtool.sh ARGS...    run promtool with ARGS
# Env:   PROMTOOL_CACHE  where the binary is kept (default ~/.cache/xgb-stream/promtool)
set -euo pipefail

# Prometheus v3.x is the Go module's v0.3xx.y: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_MODULE_VERSION=v0.316.0

cache=${PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xgb-stream/promtool}
dir=$cache/$PROMETHEUS_MODULE_VERSION
bin=$dir/promtool

if [ ! -x "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
  command -v go >/dev/null || { echo "promtool.sh: Go is needed to build promtool (none on PATH)" >&2; exit 1; }
  echo "promtool.sh: building promtool from github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION into $dir (several minutes the first time)" >&2
  mkdir -p "$dir"
  # Built into a scratch directory and moved into place, so that an interrupted build never leaves
  # a binary that the check above would take for a finished one.
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOBIN=$tmp GOFLAGS=-buildvcs=false \
    go install -trimpath "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2
  mv "$tmp/promtool" "$bin"
fi

if [ $# -eq 0 ]; then
  echo "$bin"
else
  exec "$bin" "$@"
fi
