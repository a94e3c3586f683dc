#!/usr/bin/env bash
# Installs what xgb-stream needs, idempotently, with no system package for xgboost:
#   - the npm dependencies, whose install step fetches the pinned libxgboost (scripts/libxgboost.js),
#     builds librdkafka and the native addon, and compiles the TypeScript;
#   - the trainer's venv (.venv), on a Python ≥ 3.12 (scripts/find-python.sh): the same xgboost-cpu
#     wheel the addon's libxgboost came from, with numpy, scikit-learn and matplotlib
#     (scripts/requirements.txt).
# The pinned xgboost release is the one in scripts/xgboost-version.json.
# Usage: scripts/setup.sh [--check]   (--check: only do what is missing, say nothing when all is there)
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--check" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }

# node-gyp (node-rdkafka) must find Node's headers locally: there is no internet to download them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi

# node_modules is current when it was installed from this very lockfile; editing package.json's scripts
# alone does not call for a reinstall (which would also rebuild librdkafka).
stamp=node_modules/.xgb-stream-setup
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "setup: installing npm dependencies (builds librdkafka and the native addon; a few minutes the first time)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > "$stamp"
else
  say "npm dependencies present"
fi

xgboost_version=$(node -p "require('./scripts/xgboost-version.json').version")
addon=build/Release/xgb_stream_native.node
if [ ! -f "$addon" ] || [ ! -f ".libxgboost/$xgboost_version/.complete" ] \
    || [ -n "$(find native CMakeLists.txt scripts/libxgboost.js scripts/xgboost-version.json -newer "$addon" -print -quit)" ]; then
  echo "setup: building the native addon"
  { node scripts/libxgboost.js && npx cmake-js compile; } >/tmp/xgb-stream-cmake.log 2>&1 \
    || { tail -30 /tmp/xgb-stream-cmake.log >&2; exit 1; }
fi

# The trainer's venv, remade when the wheel or the requirements change.
wheel=$(ls .libxgboost/wheels/xgboost_cpu-"$xgboost_version"-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
  echo "setup: no xgboost-cpu wheel in .libxgboost/wheels (XGBOOST_ROOT builds skip the fetch):" \
    "set XGB_STREAM_PYTHON to a Python with xgboost $xgboost_version for the trainer" >&2
else
  venv_stamp=.venv/.xgb-stream-setup
  venv_hash=$(cat scripts/requirements.txt "$wheel" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$venv_stamp" ] || [ "$(cat "$venv_stamp")" != "$venv_hash" ]; then
    python=$(bash scripts/find-python.sh) || exit 1
    echo "setup: making the trainer's venv .venv (xgboost from $(basename "$wheel"), $("$python" -V))"
    rm -rf .venv
    "$python" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "$wheel" -r scripts/requirements.txt
    echo "$venv_hash" > "$venv_stamp"
  else
    say "trainer venv present"
  fi
fi
if [ ! -f dist/index.js ] || [ -n "$(find lib -newer dist/index.js -name '*.ts' -print -quit)" ]; then
  say "compiling TypeScript"
  npx tsc -p tsconfig.build.json
fi
say "ready"
