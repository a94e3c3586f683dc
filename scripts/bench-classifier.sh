#!/usr/bin/env bash
# npm run bench:classifier [-- --model FILE --nthread N --seconds S --repeats R --batches 1,2,...]
# Builds the addon and the C baseline (bench_predict, a target of CMakeLists.txt), then prints the
# Classifier's microseconds per row beside the C program's, for the same model and rows.
set -euo pipefail
cd "$(dirname "$0")/.."

case " $* " in
  *" -h "*|*" --help "*) exec node scripts/run-ts.js scripts/bench-classifier.ts --help ;;
esac

# bench_predict is a target of the CMake build; a build/ left by node-gyp has no CMake cache.
if [ ! -f build/CMakeCache.txt ] || [ ! -f build/Release/xgb_stream_native.node ]; then
  npx cmake-js compile >/dev/null
fi
cmake --build build --target bench_predict >/dev/null

model_dir=models/default
for a in "$@"; do
  [ "${prev:-}" = "--model" ] && model_dir=$(dirname "$a")
  prev=$a
done
if [ ! -f "$model_dir/test-vectors/index.json" ]; then
  echo "bench-classifier: no test vectors in $model_dir: run 'npm run train' first" >&2
  exit 1
fi
exec node scripts/run-ts.js scripts/bench-classifier.ts "$@"
