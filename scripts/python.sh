#!/usr/bin/env bash
# Runs a Python script with the interpreter that has Debian's python3-xgboost, the same xgboost
# version as the libxgboost the native addon links, whatever python3 comes first on PATH.
set -euo pipefail
for py in "${XGB_STREAM_PYTHON:-}" /usr/bin/python3 python3; do
  [ -n "$py" ] || continue
  if "$py" -c 'import xgboost' >/dev/null 2>&1; then exec "$py" "$@"; fi
done
echo "no python3 with xgboost found: run 'npm run setup' (installs Debian's python3-xgboost)" >&2
exit 1
