#!/usr/bin/env bash
# npm run bench:kafka-floor [-- N=200000 [PARTITIONS=2]]
# What the processor's Kafka work costs per record, through node-rdkafka and natively: the processor in
# passthrough mode (everything but scoring; XGB_STREAM_PASSTHROUGH=1, --output-format float) beside
# native/bench/bench_kafka_floor.c, a C loop over the same librdkafka that node-rdkafka builds, doing
# the same work (consume, one output per record with the input's key and one header, flush per batch,
# store offsets). Both drain the same N preloaded records, one after the other, each `ROUNDS` times
# (default 2), on the local broker (started if needed) or KAFKA_BROKERS. Prints a row per run: drain
# records/s and CPU microseconds per record, the node process's main thread apart.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
partitions=${2:-2}
rounds=${ROUNDS:-2}
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench-kafka-floor: N must be a positive integer, got '$n'" >&2; exit 2; }
[[ "$partitions" =~ ^[1-9][0-9]*$ ]] || { echo "bench-kafka-floor: PARTITIONS must be a positive integer, got '$partitions'" >&2; exit 2; }
[ -f dist/cli.js ] || { echo "bench-kafka-floor: dist/ is not built: run npm run build" >&2; exit 1; }

rdkafka=node_modules/node-rdkafka/build/deps
bin=build/bench/bench_kafka_floor
mkdir -p build/bench
if [ ! -x "$bin" ] || [ native/bench/bench_kafka_floor.c -nt "$bin" ]; then
  gcc -O2 -Wall -o "$bin" native/bench/bench_kafka_floor.c -I"$rdkafka/include" -L"$rdkafka" -lrdkafka \
    -Wl,-rpath,"$(pwd)/$rdkafka"
fi

brokers=${KAFKA_BROKERS:-$(bash scripts/kafka.sh start | tail -1)}
run=floor-$(date +%s)
topic() { bash scripts/kafka.sh topics --bootstrap-server "$brokers" --create --topic "$1" --partitions "$partitions" >/dev/null; }
topic "$run-in"
for t in out sus reg dlq; do topic "$run-$t"; done
node dist/replay.js --brokers "$brokers" --topic "$run-in" --file models/default/replay.ndjson.gz --count "$n" >/dev/null

metrics_port=${METRICS_PORT:-19465}
outputs() { curl -s "localhost:$metrics_port/metrics" | awk '/^xgb_stream_records_out_total/ {s+=$2} END {print s+0}'; }

node_floor() {
  local group=$1 start end pid
  start=$(date +%s%N)
  XGB_STREAM_PASSTHROUGH=1 node dist/cli.js --brokers "$brokers" --input-topic "$run-in" --suspicious-topic "$run-sus" \
    --regular-topic "$run-reg" --dead-letter-topic "$run-dlq" --group-id "$group" --model models/default/model.ubj \
    --output-format float --metrics-port "$metrics_port" --log-level error &
  pid=$!
  until [ "$(outputs 2>/dev/null || echo 0)" -ge "$n" ] 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "bench-kafka-floor: the processor stopped" >&2; exit 1; }
    sleep 0.1
  done
  end=$(date +%s%N)
  local main cpu
  main=$(awk '{print ($14+$15)/100}' "/proc/$pid/task/$pid/stat")
  cpu=$(awk '{print ($14+$15)/100}' "/proc/$pid/stat")
  kill -INT "$pid"; wait "$pid" || true
  awk -v n="$n" -v ns="$((end - start))" -v cpu="$cpu" -v main="$main" 'BEGIN {
    printf "node-rdkafka (passthrough) drain_s=%.3f rec_per_s=%.0f cpu_us_per_rec=%.1f main_thread_us_per_rec=%.1f\n",
      ns / 1e9, n / (ns / 1e9), cpu * 1e6 / n, main * 1e6 / n }'
}

for round in $(seq "$rounds"); do
  node_floor "$run-node-$round"
  "$bin" "$brokers" "$run-in" "$run-out" "$run-c-$round" "$n" 500
done
