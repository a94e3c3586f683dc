#!/usr/bin/env bash
# Prints the path of a Python ≥ 3.12, the oldest that current xgboost releases (3.3 and later)
# install on: XGB_STREAM_SETUP_PYTHON if set, else the first of python3.13, python3.12 and python3
# on PATH that runs and is new enough. A pyenv shim for a version pyenv has installed but not
# selected fails to run; those versions are tried through pyenv's own prefix. With none, one line on
# stderr says what to install, and the exit status is 1.
set -euo pipefail
new_enough() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
if [ -n "${XGB_STREAM_SETUP_PYTHON:-}" ]; then
  if new_enough "$XGB_STREAM_SETUP_PYTHON"; then command -v "$XGB_STREAM_SETUP_PYTHON"; exit 0; fi
  echo "XGB_STREAM_SETUP_PYTHON=$XGB_STREAM_SETUP_PYTHON is not a Python 3.12 or newer" >&2
  exit 1
fi
for name in python3.13 python3.12 python3; do
  if command -v "$name" >/dev/null && new_enough "$name"; then
    # The interpreter itself, not a shim or wrapper, so a venv made from it does not depend on PATH.
    "$name" -c 'import sys; print(sys.executable)'
    exit 0
  fi
  if [ "$name" != python3 ] && command -v pyenv >/dev/null; then
    for version in $(pyenv whence "$name" 2>/dev/null | sort -rV); do
      candidate="$(pyenv root)/versions/$version/bin/$name"
      if new_enough "$candidate"; then echo "$candidate"; exit 0; fi
    done
  fi
done
echo "no Python 3.12 or newer found (tried python3.13, python3.12, python3): install Python 3.12 or newer (python.org, pyenv or a python3.12 package) for the trainer, or set XGB_STREAM_SETUP_PYTHON to one" >&2
exit 1
