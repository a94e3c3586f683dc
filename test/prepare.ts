/**
 * What the tests need before the first file runs, made once: `lib/` compiled into `dist/`, the
 * default and candidate models trained when missing, the version matrix's models built when missing.
 * The jest global setup calls it; `scripts/test.sh` runs it once, before the suite's two lanes, so
 * that the lanes never compile or train at the same time.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const DEFAULT_MODEL_DIR = path.join(root, 'models', 'default');
const CANDIDATE_MODEL_DIR = path.join(root, 'models', 'candidate');

export function prepareTests(): void {
  // The integration tests run the compiled CLI (dist/): compile it now, so that `npx jest FILE` never
  // tests code older than lib/. tsc is incremental, so this costs little when nothing changed.
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p',
    path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (!existsSync(path.join(DEFAULT_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\ntest setup: training the default model (models/default)\n');
    execFileSync('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--out', DEFAULT_MODEL_DIR], { stdio: 'inherit' });
  }
  // A second, comparable model (another seed) for the live-rollout tests: a reload's candidate, a shadow.
  if (!existsSync(path.join(CANDIDATE_MODEL_DIR, 'model.ubj'))) {
    process.stdout.write('\ntest setup: training the candidate model (models/candidate, --seed 7)\n');
    execFileSync('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'),
      '--seed', '7', '--out', CANDIDATE_MODEL_DIR], { stdio: 'inherit' });
  }
  // The version matrix: the same small model from each pinned Python xgboost release, each in its own
  // venv. Made once (about a minute, mostly the venvs), then reused while the training script stays.
  execFileSync('bash', [path.join(root, 'scripts/matrix/build.sh')], { stdio: 'inherit' });
}

// `node scripts/run-ts.js test/prepare.ts`: the preparation alone.
if (process.argv[1] === __filename) prepareTests();
