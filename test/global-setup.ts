import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { prepareTests } from './prepare';

const root = path.resolve(__dirname, '..');
const stateFile = path.join(root, 'node_modules', '.xgb-stream-test-kafka');

/**
 * Compiles, trains what is missing (test/prepare.ts), then makes sure a broker is there for the
 * integration tests. Under `scripts/test.sh` both are done already: XGB_STREAM_TEST_PREPARED says
 * so, and KAFKA_BROKERS names the broker, which the script stops itself.
 */
export default async function globalSetup(): Promise<void> {
  if (!process.env.XGB_STREAM_TEST_PREPARED) await prepareTests();
  if (process.env.KAFKA_BROKERS) {
    // Not ours to stop: a state file left by an interrupted run must not make the teardown stop it.
    rmSync(stateFile, { force: true });
    return;
  }
  const wasRunning = execFileSync('bash', [path.join(root, 'scripts/kafka.sh'), 'status'],
    { encoding: 'utf8' }).includes('running');
  const out = execFileSync('bash', [path.join(root, 'scripts/kafka.sh'), 'start'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = out.trim().split('\n');
  process.env.KAFKA_BROKERS = lines[lines.length - 1].trim();
  mkdirSync(path.dirname(stateFile), { recursive: true });
  writeFileSync(stateFile, wasRunning ? 'external' : 'started');
}
