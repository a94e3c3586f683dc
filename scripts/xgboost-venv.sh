#!/usr/bin/env bash
# Makes (once) and names a Python venv holding one pinned xgboost release, for the version-matrix
# tests and the legacy-model converter. Prints the venv's python on stdout; progress goes to stderr.
#   scripts/xgboost-venv.sh 1.7.6|2.1.4|3.0.5|3.2.0
# 3.2.0 is the trainer's own venv (.venv, made by scripts/setup.sh). The others live in
# .venvs/xgboost-<version>, kept between runs: a stamp records what was installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${1:-}"
case "$version" in
  # xgboost 1.7 reads numpy's removed aliases, so it keeps numpy 1.x; 2.1 builds on the same pins.
  1.7.6) packages=(xgboost==1.7.6 numpy==1.26.4 scipy==1.13.1) ;;
  2.1.4) packages=(xgboost-cpu==2.1.4 numpy==1.26.4 scipy==1.13.1) ;;
  3.0.5) packages=(xgboost-cpu==3.0.5 numpy==2.2.6 scipy==1.15.3) ;;
  3.2.0) exec "$root/scripts/python.sh" -c 'import sys; print(sys.executable)' ;;
  *) echo "xgboost-venv: unknown xgboost release '$version': expected 1.7.6, 2.1.4, 3.0.5 or 3.2.0" >&2; exit 2 ;;
esac
venv="$root/.venvs/xgboost-$version"
stamp="$venv/.xgb-stream-packages"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  echo "xgboost-venv: making $venv (${packages[*]})" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}" >&2
  echo "${packages[*]}" > "$stamp"
fi
echo "$venv/bin/python"
