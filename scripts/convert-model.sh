#!/usr/bin/env bash
# npm run convert-model -- IN OUT: turns a legacy binary XGBoost model into UBJSON (or JSON) with a
# pinned xgboost 3.0.5, the last release that reads the binary format, in its own venv
# (.venvs/xgboost-3.0.5, made on first use).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python=$("$root/scripts/xgboost-venv.sh" 3.0.5)
exec "$python" "$root/scripts/convert_model.py" "$@"
