import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
export const DEFAULT_MODEL_DIR = path.join(root, 'models', 'default');
export const CANDIDATE_MODEL_DIR = path.join(root, 'models', 'candidate');
const stateFile = path.join(root, 'node_modules', '.xgb-stream-test-kafka');

/** Trains the default model when missing, then makes sure a broker is there for the integration tests. */
export default async function globalSetup(): Promise<void> {
  // The integration tests run the compiled CLI (dist/): compile it now, so that `npx jest FILE` never
  // tests code older than lib/. tsc is incremental, so this costs little when nothing changed.
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p',
    path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (!existsSync(path.join(DEFAULT_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\nglobal setup: training the default model (models/default)\n');
    execFileSync('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--out', DEFAULT_MODEL_DIR], { stdio: 'inherit' });
  }
  // A second, comparable model (another seed) for the live-rollout tests: a reload's candidate, a shadow.
  if (!existsSync(path.join(CANDIDATE_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\nglobal setup: training the candidate model (models/candidate, --seed 7)\n');
    execFileSync('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--seed', '7', '--out', CANDIDATE_MODEL_DIR], { stdio: 'inherit' });
  }
  // The version matrix: the same small model from each pinned Python xgboost release, each in its own
  // venv. Made once (about a minute, mostly the venvs), then reused while the training script stays.
  execFileSync('bash', [path.join(root, 'scripts/matrix/build.sh')], { stdio: 'inherit' });
  if (process.env.KAFKA_BROKERS) {
    writeFileSync(stateFile, 'external');
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
