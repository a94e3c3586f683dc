#!/usr/bin/env bash
# Builds the version matrix's fixtures (models/matrix/<release>/): the same small model trained by each
# pinned Python xgboost release, in its own venv (scripts/xgboost-venv.sh), with that release's own
# probabilities. A fixture is rebuilt only when the training script or the release changes, so after
# the first run this takes well under a second. Used by the tests' global setup. The pinned release
# (scripts/xgboost-version.json), the trainer's own, also saves the models the Classifier must refuse.
#   scripts/matrix/build.sh [OUT]     (default models/matrix)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/models/matrix}"
script="$root/scripts/matrix/train_matrix_model.py"
script_hash=$(sha256sum "$script" | cut -d' ' -f1)
pinned=$(node -p "require('$root/scripts/xgboost-version.json').version")
for release in 1.7.6 2.1.4 3.0.5 3.2.0 3.3.0 3.4.1; do
  dir="$out/$release"
  stamp="$dir/.stamp"
  extra=()
  [ "$release" = "$pinned" ] && extra=(--other-objectives)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$script_hash ${extra[*]}" ] && continue
  python=$("$root/scripts/xgboost-venv.sh" "$release")
  rm -rf "$dir"
  OMP_WAIT_POLICY=PASSIVE "$python" "$script" --out "$dir" "${extra[@]}"
  echo "$script_hash ${extra[*]}" > "$stamp"
done
