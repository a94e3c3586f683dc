/**
 * Leak check: scores 1,000,000 rows through each Classifier path in a loop (predict, predictBatch,
 * predictAsync, predictBatchAsync), then explains 1 % as many rows and loads and closes the model
 * 500 times (from the file and from a Buffer), printing RSS as it goes.
 * A new path brings one-off allocations (libuv's worker threads and their malloc arenas, xgboost's
 * per-thread buffers), so RSS may step up early in a phase; a leak grows with the work instead. The
 * verdict therefore compares RSS halfway through each phase with its end: over the second 500,000
 * rows a leak of even 4 bytes a row would show. Exits 1 when that growth exceeds --limit MB
 * (default 2) in any phase.
 *
 *   npm run bench:rss [-- --model FILE --rows N --limit MB]
 *
 * Run with --expose-gc (the npm script does) so that the figures reflect native memory, not garbage
 * the JS collector has yet to reclaim.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Classifier } from '../lib';
import { isMainScript, numberFlag, readFlags, UsageError } from './options';

const ROOT = path.resolve(__dirname, '..');
const HELP = `Usage: npm run bench:rss -- [options]

  --model <path>   model to score, with test-vectors beside it (default models/default/model.ubj)
  --rows <n>       rows scored through each prediction path (default 1000000)
  --limit <mb>     RSS growth over a phase's second half that counts as a leak (default 2)`;

const FLAGS = {
  help: { type: 'boolean', short: 'h' },
  model: { type: 'string' },
  rows: { type: 'string' },
  limit: { type: 'string' },
} as const;

interface Options {
  readonly model: string;
  readonly rows: number;
  readonly limitMb: number;
}

/** The command line; 'help' for -h. Throws UsageError naming a bad flag. */
export function parseRssCheckOptions(argv: readonly string[]): Options | 'help' {
  const flags = readFlags(argv, FLAGS);
  if (flags.help) return 'help';
  return {
    model: path.resolve(flags.model ?? path.join(ROOT, 'models', 'default', 'model.ubj')),
    rows: numberFlag('--rows', flags.rows, 1_000_000, { min: 1, integer: true }),
    limitMb: numberFlag('--limit', flags.limit, 2, { min: 0, aboveMin: true }),
  };
}

const BATCH = 1000;

const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => undefined);
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

function sample(): { rss: number; heap: number; external: number } {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

async function main(): Promise<number> {
  let parsed: Options | 'help';
  try {
    parsed = parseRssCheckOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`rss-check: ${err.message}\n`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const { model: modelPath, rows, limitMb } = parsed;
  const vectorsDir = path.join(path.dirname(modelPath), 'test-vectors');
  const index = JSON.parse(readFileSync(path.join(vectorsDir, 'index.json'), 'utf8'));
  const bytes = readFileSync(path.join(vectorsDir, index.features));
  const features = new Float32Array(bytes.length / 4);
  new Uint8Array(features.buffer).set(bytes);
  const classifier = Classifier.load(modelPath, { nthread: 1 });
  const n = classifier.numFeatures;
  const fileRows = features.length / n;
  const batch = new Float32Array(BATCH * n);
  for (let i = 0; i < BATCH; i++) batch.set(features.subarray((i % fileRows) * n, (i % fileRows + 1) * n), i * n);
  const row = (i: number): Float32Array => features.subarray((i % fileRows) * n, (i % fileRows + 1) * n);
  const modelBytes = readFileSync(modelPath);

  type Phase = { name: string; unit: string; total: number; step: (done: number) => Promise<number> };
  const phases: Phase[] = [
    { name: 'predict', unit: 'rows', total: rows, step: async (d) => { classifier.predict(row(d)); return 1; } },
    { name: 'predictBatch', unit: 'rows', total: rows, step: async () => { classifier.predictBatch(batch, BATCH); return BATCH; } },
    {
      name: 'predictAsync', unit: 'rows', total: rows,
      step: async (d) => {
        await Promise.all(Array.from({ length: BATCH }, (_, i) => classifier.predictAsync(row(d + i))));
        return BATCH;
      },
    },
    { name: 'predictBatchAsync', unit: 'rows', total: rows, step: async () => { await classifier.predictBatchAsync(batch, BATCH); return BATCH; } },
    { name: 'explain', unit: 'rows', total: rows / 100, step: async (d) => { classifier.explain(row(d)); return 1; } },
    {
      name: 'load+close', unit: 'models', total: 500,
      step: async (d) => {
        const c = d % 2 === 0 ? Classifier.load(modelPath) : Classifier.load(modelBytes);
        c.predict(row(d));
        await c.predictAsync(row(d));
        c.close();
        return 1;
      },
    },
  ];

  const start = sample();
  const lines = ['| phase | done | RSS MB | JS heap MB | external+ArrayBuffers MB |', '|---|---:|---:|---:|---:|'];
  lines.push(`| start | 0 | ${mb(start.rss)} | ${mb(start.heap)} | ${mb(start.external)} |`);
  const verdicts: string[] = [];
  let worst = 0;
  const began = Date.now();
  for (const phase of phases) {
    const every = Math.max(1, Math.round(phase.total / 10));
    let done = 0;
    let nextReport = every;
    let first: number | undefined;
    let halfway: number | undefined;
    let last = start;
    while (done < phase.total) {
      done += await phase.step(done);
      if (done >= nextReport || done >= phase.total) {
        nextReport += every;
        last = sample();
        first ??= last.rss;
        if (halfway === undefined && done >= phase.total / 2) halfway = last.rss;
        lines.push(`| ${phase.name} | ${done.toLocaleString('en-US')} ${phase.unit} | ${mb(last.rss)} | ${mb(last.heap)} | ${mb(last.external)} |`);
        process.stderr.write(`${lines[lines.length - 1]}\n`);
      }
    }
    const growth = last.rss - (halfway ?? last.rss);
    worst = Math.max(worst, growth);
    const signed = (x: number): string => `${x >= 0 ? '+' : ''}${mb(x)}`;
    verdicts.push(`${phase.name}: ${phase.total.toLocaleString('en-US')} ${phase.unit}; RSS after the first tenth ` +
      `${mb(first ?? 0)} MB, halfway ${mb(halfway ?? 0)} MB, end ${mb(last.rss)} MB; second half ${signed(growth)} MB`);
  }
  classifier.close();
  const end = sample();
  process.stdout.write(`${lines.join('\n')}\n\n${verdicts.join('\n')}\n` +
    `overall: ${mb(start.rss)} → ${mb(end.rss)} MB in ${((Date.now() - began) / 1000).toFixed(0)} s\n`);
  if (worst > limitMb * 2 ** 20) {
    process.stdout.write(`rss-check: RSS grew by ${mb(worst)} MB over the second half of a phase (limit ${limitMb} MB): a leak\n`);
    return 1;
  }
  process.stdout.write(`rss-check: RSS flat (largest growth over a phase's second half ${mb(worst)} MB, limit ${limitMb} MB)\n`);
  return 0;
}

if (isMainScript(__filename)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`rss-check: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
