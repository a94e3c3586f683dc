/**
 * The README as a contract: its tables of flags, metrics, headers, dead-letter reasons and exit
 * statuses are parsed and compared with the code in both directions, defaults included. Anything the
 * README promises that the code lacks, or the code does that the README does not say, fails here.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { OPTIONS } from '../lib/config';
import { HELP as DLQ_HELP } from '../lib/dlq/options';
import { HELP as REPLAY_HELP } from '../lib/replay';
import { EXIT } from '../lib/exit';
import { ProcessorMetrics } from '../lib/metrics';
import { HEADER } from '../lib/processor/score/output';
import { resolveThreshold } from '../lib/processor/model/serving-model';
import { DEAD_LETTER_REASONS } from '../lib/processor/score/validate';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

/** The rows of every table whose header row starts with `| first |`, as arrays of cells. */
function tables(first: string): string[][][] {
  const lines = readme.split('\n');
  const found: string[][][] = [];
  for (let start = 0; start < lines.length; start++) {
    if (!lines[start].startsWith(`| ${first} |`)) continue;
    const rows: string[][] = [];
    for (let i = start + 2; i < lines.length && lines[i].startsWith('|'); i++) {
      rows.push(lines[i].slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
    }
    found.push(rows);
  }
  if (found.length === 0) throw new Error(`README has no table starting with '${first}'`);
  return found;
}

/** The rows of the first table whose header row starts with `| first |`. */
function table(first: string): string[][] {
  return tables(first)[0];
}

/** The backquoted literals of a cell, e.g. "`--x`, `-X`" -> ["--x", "-X"]. */
function literals(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

describe('README: configuration reference', () => {
  const rows = table('flag').map((cells) => ({ flags: literals(cells[0]), env: literals(cells[1]), def: cells[2] }));

  it('lists every flag of the option table, and no other, with its environment variable', () => {
    const documented = rows.filter((r) => !r.flags.includes('-X')).map((r) => [r.flags[0], r.env[0]]);
    expect(documented.sort()).toEqual(OPTIONS.map((o) => [o.flag, o.env]).sort());
  });

  it('gives each flag the default the code applies', () => {
    for (const o of OPTIONS) {
      const row = rows.find((r) => r.flags[0] === o.flag)!;
      const shown = literals(row.def)[0];
      if (o.def === undefined && ['--instance-id', '--shadow-model', '--shadow-topic', '--kafka-config', '--schema-registry',
        '--schema-registry-basic-auth'].includes(o.flag)) {
        // Nothing unless given: a dynamic membership, no shadow model, no shadow topic, no properties file, no registry.
        expect(row.def).toBe('none');
      } else if (o.def === undefined && o.flag === '--max-alert-rate-ratio') {
        // The canary reports alert rates; it refuses a candidate on them only when asked to.
        expect(row.def).toBe('off');
      } else if (o.def === undefined) {
        // Only the threshold has no fixed default: the model's attribute, else 0.5.
        expect(o.flag).toBe('--threshold');
        expect(row.def).toBe("model's `threshold` attribute, else 0.5");
        expect(resolveThreshold(undefined, undefined)).toBe(0.5);
        expect(resolveThreshold(undefined, '0.7')).toBe(0.7);
      }
      else if (o.def === 'false') expect(row.def).toBe('off');
      else expect(shown).toBe(o.def);
    }
  });

  it('documents -X and --kafka-property with KAFKA_PROPERTIES', () => {
    const row = rows.find((r) => r.flags.includes('-X'))!;
    expect(row.flags).toEqual(['-X', '--kafka-property']);
    expect(row.env).toEqual(['KAFKA_PROPERTIES']);
  });
});

/** The flags a --help text lists: its lines that start with an option. */
function helpFlags(help: string): string[] {
  return help.split('\n').filter((l) => /^ {2}-/.test(l))
    .flatMap((l) => [...l.trim().split(/\s{2,}/)[0].matchAll(/(--?[\w-]+)/g)].map((m) => m[1])).sort();
}

describe('README: the replay and dead-letter tools', () => {
  it('lists every option of xgb-stream-replay --help, and no other', () => {
    expect(table('replay option').flatMap((cells) => literals(cells[0])).sort()).toEqual(helpFlags(REPLAY_HELP));
  });

  it('lists every option of xgb-stream-dlq --help, and no other', () => {
    expect(table('dlq option').flatMap((cells) => literals(cells[0])).sort()).toEqual(helpFlags(DLQ_HELP));
  });
});

describe('README: metrics', () => {
  const rows = table('metric').map((cells) => ({ name: literals(cells[0])[0], type: cells[1], labels: literals(cells[2]) }));

  it("lists every metric of the processor's own, and no other, with its type", async () => {
    const exported = (await new ProcessorMetrics().render()).split('\n')
      .filter((l) => l.startsWith('# TYPE xgb_stream_')).map((l) => l.slice('# TYPE '.length).split(' '));
    expect(rows.map((r) => [r.name, r.type]).sort()).toEqual(exported.sort());
  });

  it("names the prom-client default metrics it exports beside them", async () => {
    const text = await new ProcessorMetrics().render();
    const named = [...readme.matchAll(/`((?:process|nodejs)_[a-z_]+)`/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThanOrEqual(5);
    for (const name of named) expect(text).toContain(`# TYPE ${name} `);
  });
});

describe('README: headers', () => {
  it('names every header the processor writes, and no other', () => {
    const documented = [...tables('header').flat(), ...table('`xgb.error.reason`')]
      .flatMap((cells) => literals(cells[0]).filter((l) => l.startsWith('xgb.')));
    // The dead-letter table's header row names xgb.error.reason and its examples xgb.error.message.
    documented.push('xgb.error.reason', 'xgb.error.message');
    expect([...new Set(documented)].sort()).toEqual(Object.values(HEADER).sort());
  });

  it('lists every dead-letter reason, and no other', () => {
    const reasons = table('`xgb.error.reason`').map((cells) => literals(cells[0])[0]);
    expect(reasons.sort()).toEqual([...DEAD_LETTER_REASONS].sort());
  });
});

describe('README: exit statuses', () => {
  it('documents every exit status the command uses, and no other', () => {
    const documented = table('exit status').map((cells) => Number(literals(cells[0])[0]));
    expect(documented.sort((a, b) => a - b)).toEqual(Object.values(EXIT).sort((a, b) => a - b));
  });
});

describe('README: quick start', () => {
  it('gives the two quick-start commands', () => {
    expect(readme).toMatch(/^ {4}npm run demo\b/m);
    expect(readme).toMatch(/^ {4}npm test\b/m);
  });
});
