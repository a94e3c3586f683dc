import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const stateFile = path.join(root, 'node_modules', '.xgb-stream-test-kafka');

/** Stops the local broker only when the global setup started it. */
export default async function globalTeardown(): Promise<void> {
  if (!existsSync(stateFile)) return;
  const state = readFileSync(stateFile, 'utf8');
  rmSync(stateFile);
  if (state === 'started' && !process.env.XGB_STREAM_KEEP_KAFKA) {
    execFileSync('bash', [path.join(root, 'scripts/kafka.sh'), 'stop'], { stdio: 'inherit' });
  }
}
