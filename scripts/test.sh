#!/usr/bin/env bash
# The test suite: `npm test`. With arguments it is jest with them (`npm test -- test/cli.test.ts`).
#
# Without, it runs the suite in two lanes at once, each one file at a time. The files that stop, kill
# or restart brokers and processors spend most of their time waiting for a broker or a session to
# time out, not computing; they take one lane, one after the other (so no two bounce brokers at once),
# and every other file the other lane. The compile, the models and the broker are made once, first.
#   KAFKA_BROKERS=host:port   test against that cluster instead of starting the local broker
#   XGB_STREAM_KEEP_KAFKA=1    leave the local broker running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then exec npx jest "$@"; fi

waiting_lane=(test/exactly-once.test.ts test/broker-restart.test.ts test/faults.test.ts test/handover.test.ts)

node scripts/run-ts.js test/prepare.ts
export XGB_STREAM_TEST_PREPARED=1

started=0
if [ -z "${KAFKA_BROKERS:-}" ]; then
  bash scripts/kafka.sh status | grep -q '^running' || started=1
  KAFKA_BROKERS=$(bash scripts/kafka.sh start | tail -n 1)
  export KAFKA_BROKERS
fi
other_log=$(mktemp)
stop_broker() {
  rm -f "$other_log"
  if [ "$started" = 1 ] && [ -z "${XGB_STREAM_KEEP_KAFKA:-}" ]; then bash scripts/kafka.sh stop; fi
}
trap stop_broker EXIT

echo "tests: two lanes against $KAFKA_BROKERS; the second lane's output follows the first's"
npx jest --testPathIgnorePatterns "${waiting_lane[@]}" >"$other_log" 2>&1 &
other=$!
waiting_status=0
npx jest "${waiting_lane[@]}" || waiting_status=$?
other_status=0
wait "$other" || other_status=$?
echo
echo "---- second lane: every other test file ----"
cat "$other_log"
echo "tests: lane of broker and processor restarts exit $waiting_status, lane of the other files exit $other_status"
[ "$waiting_status" = 0 ] && [ "$other_status" = 0 ]
