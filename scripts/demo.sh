#!/usr/bin/env bash
# npm run demo: set up a fresh machine (dependencies, native build, TypeScript), train the default
# model when it is missing, then run the demo (scripts/demo.ts; its options follow `npm run demo --`).
set -euo pipefail
cd "$(dirname "$0")/.."

case " $* " in
  *" -h "*|*" --help "*) exec node scripts/run-ts.js scripts/demo.ts --help ;;
esac

bash scripts/setup.sh
if [ ! -f models/default/model.ubj ] || [ ! -f models/default/replay.ndjson.gz ]; then
  echo "demo: training the default model (models/default)"
  npm run --silent train
fi
# exec: the demo itself receives SIGINT/SIGTERM and stops what it started, with no shell in between.
exec node scripts/run-ts.js scripts/demo.ts "$@"
