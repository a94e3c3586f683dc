#!/usr/bin/env bash
# Installs what xgb-stream needs on a Debian/Ubuntu machine, idempotently:
#   - libxgboost-dev (the library the native addon links) and Debian's python3-xgboost of the same
#     version, with numpy, scikit-learn and matplotlib, for the trainer;
#   - the npm dependencies, which builds the native addon and compiles the TypeScript.
# Usage: scripts/setup.sh [--check]   (--check: only do what is missing, say nothing when all is there)
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--check" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }

debian_packages=(libxgboost-dev python3-xgboost python3-numpy python3-sklearn python3-matplotlib)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} and no apt-get here; install libxgboost 1.7.x and its Python package by hand" >&2
    exit 1
  fi
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/xgb-stream-apt.log 2>&1 || {
    "${sudo_cmd[@]}" apt-get update >/tmp/xgb-stream-apt.log 2>&1
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/xgb-stream-apt.log 2>&1 || {
      tail -20 /tmp/xgb-stream-apt.log >&2; echo "setup: apt-get install ${missing[*]} failed" >&2; exit 1; }
  }
else
  say "Debian packages present (${debian_packages[*]})"
fi

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

addon=build/Release/xgb_stream_native.node
if [ ! -f "$addon" ] || [ -n "$(find native CMakeLists.txt -newer "$addon" -print -quit)" ]; then
  echo "setup: building the native addon"
  npx cmake-js compile >/tmp/xgb-stream-cmake.log 2>&1 || { tail -30 /tmp/xgb-stream-cmake.log >&2; exit 1; }
fi
if [ ! -f dist/index.js ] || [ -n "$(find lib -newer dist/index.js -name '*.ts' -print -quit)" ]; then
  say "compiling TypeScript"
  npx tsc -p tsconfig.build.json
fi
say "ready"
