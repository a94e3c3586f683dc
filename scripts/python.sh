#!/usr/bin/env bash
# Runs a Python script with the project's venv (.venv, made by scripts/setup.sh), whose xgboost is the
# release the native addon links, installed from the same wheel. XGB_STREAM_PYTHON names another
# interpreter, for a trainer environment of your own.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${XGB_STREAM_PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$py" ] || ! "$py" -c 'import xgboost' >/dev/null 2>&1; then
  echo "no Python with xgboost at $py: run 'npm run setup' (it makes the venv .venv)" >&2
  exit 1
fi
exec "$py" "$@"
