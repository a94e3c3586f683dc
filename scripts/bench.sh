#!/usr/bin/env bash
# npm run bench: make sure the project is built and the default model trained, then run the
# end-to-end benchmark (scripts/bench.ts; its options follow `npm run bench --`).
set -euo pipefail
cd "$(dirname "$0")/.."

case " $* " in
  *" -h "*|*" --help "*) exec node scripts/run-ts.js scripts/bench.ts --help ;;
esac

bash scripts/setup.sh --check
if [ ! -f models/default/model.ubj ] || [ ! -f models/default/replay.ndjson.gz ]; then
  echo "bench: training the default model (models/default)"
  npm run --silent train
fi
# The shadow mode's second model: the trainer with another seed, as in the README's rollout.
if [ ! -f models/candidate/model.ubj ]; then
  echo "bench: training the candidate model (models/candidate, --seed 7)"
  bash scripts/python.sh scripts/train_model.py --seed 7 --out models/candidate
fi
# exec: the benchmark itself receives SIGINT/SIGTERM and stops what it started.
exec node scripts/run-ts.js scripts/bench.ts "$@"
