/**
 * The package as a Node project installs it: `xgb-stream/classifier` works without node-rdkafka, which
 * is an optional dependency, and the Kafka commands say how to get it when it was left out.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Classifier } from '../lib/classifier';
import { KAFKA_CLIENT_VERSION } from '../lib/kafka-client';
import { MODEL_PATH, loadTestVectors, row } from './helpers/fixtures';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..');
const MISSING = 'node-rdkafka is not installed (xgb-stream was installed without optional dependencies); '
  + `the Kafka commands need it: npm install node-rdkafka@${KAFKA_CLIENT_VERSION}`;

/** Runs a command to its end, whatever its exit code. */
async function runToEnd(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * A project that depends on the packed tarball, with a lockfile that pins the dependencies to the
 * versions of the repository's own lockfile (its entries but the dev-only ones): installing it needs
 * only the tarballs `npm ci` put in the npm cache, no registry metadata.
 */
function writeProject(project: string, tarball: string): void {
  const own = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const root = { name: 'scorer', version: '1.0.0', private: true, dependencies: { 'xgb-stream': tarball } };
  const packages: Record<string, unknown> = {
    '': { name: root.name, version: root.version, dependencies: root.dependencies },
    'node_modules/xgb-stream': {
      version: own.version, resolved: tarball, hasInstallScript: true, license: own.license, bin: own.bin,
      engines: own.engines, dependencies: own.dependencies, optionalDependencies: own.optionalDependencies,
    },
  };
  for (const [key, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) {
    if (key.startsWith('node_modules/') && entry.dev !== true) packages[key] = entry;
  }
  writeFileSync(path.join(project, 'package.json'), JSON.stringify(root));
  writeFileSync(path.join(project, 'package-lock.json'),
    JSON.stringify({ name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages }));
}

describe('the Classifier without Kafka', () => {
  it('loads neither node-rdkafka from the package root nor from xgb-stream/classifier', async () => {
    // In the repository node-rdkafka is installed, so this shows that nothing asks for it.
    const script = `
      require('./dist/classifier');
      require('./dist/index');
      const loaded = Object.keys(require.cache).filter((f) => f.includes('node-rdkafka'));
      process.stdout.write(JSON.stringify(loaded));`;
    const r = await runToEnd(process.execPath, ['-e', script], ROOT);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  it('installs offline with --omit=optional, scores through xgb-stream/classifier, and the CLIs name what is missing', async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-package-'));
    try {
      const packed = await runToEnd('npm', ['pack', '--pack-destination', work, '--silent'], ROOT);
      expect(packed.code).toBe(0);
      const tarball = path.join(work, packed.stdout.trim().split('\n').pop()!);
      expect(existsSync(tarball)).toBe(true);

      const project = path.join(work, 'project');
      mkdirSync(project);
      writeProject(project, `file:${path.relative(project, tarball)}`);
      const started = Date.now();
      // Offline: the dependencies' tarballs come from the npm cache that `npm ci` filled, and
      // scripts/libxgboost.js finds the libxgboost release files it kept there.
      const installed = await runToEnd('npm', ['ci', '--offline', '--omit=optional', '--no-audit', '--no-fund'], project,
        { ...process.env, npm_config_loglevel: 'error' });
      const seconds = (Date.now() - started) / 1000;
      expect(installed.stderr).not.toMatch(/ERR!/);
      expect(installed.code).toBe(0);
      process.stdout.write(`install --omit=optional: ${seconds.toFixed(1)} s\n`);
      expect(existsSync(path.join(project, 'node_modules', 'node-rdkafka'))).toBe(false);
      expect(readdirSync(path.join(project, 'node_modules', 'xgb-stream', 'build', 'Release')))
        .toContain('xgb_stream_native.node');

      // A row scored through the subpath export equals the repository's own Classifier, bit for bit.
      const features = row(loadTestVectors(), 3);
      const script = `
        const { Classifier } = require('xgb-stream/classifier');
        const c = Classifier.load(${JSON.stringify(MODEL_PATH)});
        process.stdout.write(JSON.stringify({ score: c.predict(${JSON.stringify(features)}),
          root: Object.keys(require('xgb-stream')) }));`;
      const scored = await runToEnd(process.execPath, ['-e', script], project);
      expect(scored.stderr).toBe('');
      const expected = Classifier.load(MODEL_PATH);
      try {
        expect(JSON.parse(scored.stdout)).toEqual({
          score: expected.predict(features),
          root: expect.arrayContaining(['Classifier', 'ModelLoadError']),
        });
      } finally {
        expected.close();
      }

      // TypeScript finds the subpath's declarations under Node's module resolution.
      writeFileSync(path.join(project, 'score.ts'),
        "import { Classifier } from 'xgb-stream/classifier';\n"
        + 'export const score = (c: Classifier, row: number[]): number => c.predict(row);\n');
      const tsc = await runToEnd(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--types', 'node',
        '--typeRoots', path.join(ROOT, 'node_modules', '@types'), 'score.ts'], project);
      expect(tsc.stdout + tsc.stderr).toBe('');
      expect(tsc.code).toBe(0);

      // The Kafka commands stop at once with one line that says how to install the client.
      const bin = path.join(project, 'node_modules', '.bin');
      const cli = await runToEnd(path.join(bin, 'xgb-stream'), ['--model', MODEL_PATH], project);
      expect(cli).toEqual({ code: 2, stdout: '', stderr: `xgb-stream: ${MISSING}\n` });
      const replay = await runToEnd(path.join(bin, 'xgb-stream-replay'), ['--random', '10'], project);
      expect(replay).toEqual({ code: 2, stdout: '', stderr: `xgb-stream-replay: ${MISSING}\n` });
      // --help needs nothing from Kafka.
      const help = await runToEnd(path.join(bin, 'xgb-stream'), ['--help'], project);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('Usage: xgb-stream [options]');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 900_000);
});
