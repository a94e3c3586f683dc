/**
 * What the tests need before the first file runs, made once: `lib/` compiled into `dist/`, the
 * default and candidate models trained when missing, the version matrix's models built when missing.
 * The jest global setup calls it; `scripts/test.sh` runs it once, before the suite's two lanes, so
 * that the lanes never compile or train at the same time.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const DEFAULT_MODEL_DIR = path.join(root, 'models', 'default');
const CANDIDATE_MODEL_DIR = path.join(root, 'models', 'candidate');

/** Runs a command with its output shown; rejects naming it when it fails. */
function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => (code === 0 ? resolve()
      : reject(new Error(`${[command, ...args].join(' ')} failed (${signal ?? `exit ${code}`})`))));
  });
}

async function trainMissing(): Promise<void> {
  if (!existsSync(path.join(DEFAULT_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\ntest setup: training the default model (models/default)\n');
    await run('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--out', DEFAULT_MODEL_DIR]);
  }
  // A second, comparable model (another seed) for the live-rollout tests: a reload's candidate, a shadow.
  if (!existsSync(path.join(CANDIDATE_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\ntest setup: training the candidate model (models/candidate, --seed 7)\n');
    await run('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--seed', '7', '--out', CANDIDATE_MODEL_DIR]);
  }
}

export async function prepareTests(): Promise<void> {
  // The integration tests run the compiled CLI (dist/): compile it now, so that `npx jest FILE` never
  // tests code older than lib/. tsc is incremental, so this costs little when nothing changed.
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p',
    path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  // The version matrix: the same small model from each pinned Python xgboost release, each in its own
  // venv. Made once (over a minute, mostly making the venvs, which waits on the disk more than it
  // computes), so beside the trainings rather than after them; then reused while its script stays.
  const failures = (await Promise.allSettled([trainMissing(), run('bash', [path.join(root, 'scripts/matrix/build.sh')])]))
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length > 0) throw failures[0].reason;
}

// `node scripts/run-ts.js test/prepare.ts`: the preparation alone.
if (process.argv[1] === __filename) {
  prepareTests().catch((err: Error) => {
    process.stderr.write(`test setup: ${err.message}\n`);
    process.exit(1);
  });
}
