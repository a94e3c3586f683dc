#!/usr/bin/env bash
# Makes (once) and names a Python venv holding one pinned xgboost release, for the version-matrix
# tests and the legacy-model converter. Prints the venv's python on stdout; progress goes to stderr.
#   scripts/xgboost-venv.sh 1.7.6|2.1.4|3.0.5|3.2.0|3.3.0|<the pinned release>
# The pinned release (scripts/xgboost-version.json) is the trainer's own venv (.venv, made by
# scripts/setup.sh). The others live in .venvs/xgboost-<version>, kept between runs: a stamp records
# what was installed. Releases up to 3.2 keep the default python3; 3.3 and later need Python ≥ 3.12
# (scripts/find-python.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${1:-}"
pinned=$(node -p "require('$root/scripts/xgboost-version.json').version")
python=python3
case "$version" in
  "$pinned") exec "$root/scripts/python.sh" -c 'import sys; print(sys.executable)' ;;
  # xgboost 1.7 reads numpy's removed aliases, so it keeps numpy 1.x; 2.1 builds on the same pins.
  1.7.6) packages=(xgboost==1.7.6 numpy==1.26.4 scipy==1.13.1) ;;
  2.1.4) packages=(xgboost-cpu==2.1.4 numpy==1.26.4 scipy==1.13.1) ;;
  3.0.5) packages=(xgboost-cpu==3.0.5 numpy==2.2.6 scipy==1.15.3) ;;
  3.2.0) packages=(xgboost-cpu==3.2.0 numpy==2.2.6 scipy==1.15.3) ;;
  3.3.0|3.4.1) packages=(xgboost-cpu=="$version" numpy==2.2.6 scipy==1.15.3); python=$("$root/scripts/find-python.sh") ;;
  *) echo "xgboost-venv: unknown xgboost release '$version': expected 1.7.6, 2.1.4, 3.0.5, 3.2.0, 3.3.0 or 3.4.1" >&2; exit 2 ;;
esac
venv="$root/.venvs/xgboost-$version"
stamp="$venv/.xgb-stream-packages"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  echo "xgboost-venv: making $venv (${packages[*]})" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}" >&2
  echo "${packages[*]}" > "$stamp"
fi
echo "$venv/bin/python"
