/**
 * The command lines of the tools in scripts/: each refuses a bad flag with a UsageError naming it
 * (the tool prints it and exits 2), and reads good ones into the values the tool runs with.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { parseBenchOptions } from '../scripts/bench';
import { parseBenchClassifierOptions } from '../scripts/bench-classifier';
import { parseDemoOptions } from '../scripts/demo';
import { isMainScript, numberFlag, numberListFlag, readFlags, UsageError } from '../scripts/options';
import { parseRssCheckOptions } from '../scripts/rss-check';

const ROOT = path.resolve(__dirname, '..');

function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('readFlags', () => {
  const spec = { n: { type: 'string' }, m: { type: 'string' }, on: { type: 'boolean' }, x: { type: 'string', short: 'X', multiple: true } } as const;

  it('reads strings, booleans and repeated flags, inline values too', () => {
    expect(readFlags(['--n', '3', '--m=4', '--on', '-X', 'a=1', '-X', 'b=2'], spec))
      .toEqual({ n: '3', m: '4', on: true, x: ['a=1', 'b=2'] });
  });

  it('refuses an unknown flag, long or short', () => {
    expect(refusal(() => readFlags(['--n', '3', '--nope'], spec))).toBe("unknown option '--nope' (see --help)");
    expect(refusal(() => readFlags(['-Z'], spec))).toBe("unknown option '-Z' (see --help)");
  });

  it('refuses a flag without its value, at the end or followed by another flag', () => {
    expect(refusal(() => readFlags(['--n'], spec))).toBe('missing value for --n');
    expect(refusal(() => readFlags(['--n', '--m', '4'], spec))).toBe('missing value for --n');
    expect(refusal(() => readFlags(['-X'], spec))).toBe('missing value for -X');
  });

  it('takes a value that starts with one dash (a negative number is refused by its range, not here)', () => {
    expect(readFlags(['--n', '-5'], spec)).toEqual({ n: '-5' });
  });

  it('refuses a value given to a switch, and stray arguments', () => {
    expect(refusal(() => readFlags(['--on=yes'], spec))).toBe("--on takes no value (given 'yes')");
    expect(refusal(() => readFlags(['--n', '3', '4'], spec))).toBe("unexpected argument '4' (see --help)");
    expect(refusal(() => readFlags(['--', '--n'], spec))).toBe("unexpected argument '--' (see --help)");
  });
});

describe('numberFlag and numberListFlag', () => {
  it('return the fallback when the flag is absent, and the number when it is good', () => {
    expect(numberFlag('--n', undefined, 7, { min: 0 })).toBe(7);
    expect(numberFlag('--n', '2.5', 7, { min: 0 })).toBe(2.5);
    expect(numberFlag('--n', '1e3', 7, { min: 0, integer: true })).toBe(1000);
    expect(numberListFlag('--l', undefined, [1, 2], { min: 1 })).toEqual([1, 2]);
    expect(numberListFlag('--l', '3, 4,5', [1, 2], { min: 1, integer: true })).toEqual([3, 4, 5]);
  });

  it.each([
    ['NaN', { min: 0 }, "invalid --n 'NaN': expected a number >= 0"],
    ['abc', { min: 0, integer: true }, "invalid --n 'abc': expected an integer >= 0"],
    ['', { min: 0 }, "invalid --n '': expected a number >= 0"],
    ['0x10', { min: 0 }, "invalid --n '0x10': expected a number >= 0"],
    ['Infinity', { min: 0 }, "invalid --n 'Infinity': expected a number >= 0"],
    ['0', { min: 0, aboveMin: true }, "invalid --n '0': expected a number > 0"],
    ['1.5', { min: 1, integer: true }, "invalid --n '1.5': expected an integer >= 1"],
    ['9', { min: 0, max: 8, integer: true }, "invalid --n '9': expected an integer from 0 to 8"],
  ])("numberFlag refuses '%s'", (raw, rule, message) => {
    expect(refusal(() => numberFlag('--n', raw, 1, rule))).toBe(message);
  });

  it('numberListFlag refuses a list with one bad item, quoting the whole list', () => {
    expect(refusal(() => numberListFlag('--l', '1,x,3', [], { min: 1, integer: true })))
      .toBe("invalid --l '1,x,3': expected a comma-separated list of integers >= 1");
    expect(refusal(() => numberListFlag('--l', '1,,3', [], { min: 0, aboveMin: true })))
      .toBe("invalid --l '1,,3': expected a comma-separated list of numbers > 0");
  });

  it('isMainScript is false for a module a test imported', () => {
    expect(isMainScript(path.join(ROOT, 'scripts', 'bench.ts'))).toBe(false);
  });
});

describe('bench-classifier', () => {
  it('refuses a NaN --nthread, naming the flag', () => {
    expect(refusal(() => parseBenchClassifierOptions(['--nthread', 'NaN'])))
      .toBe("invalid --nthread 'NaN': expected an integer from 0 to 1024");
  });

  it('refuses a bad --seconds, --repeats or --batches', () => {
    expect(refusal(() => parseBenchClassifierOptions(['--seconds', '0'])))
      .toBe("invalid --seconds '0': expected a number > 0");
    expect(refusal(() => parseBenchClassifierOptions(['--repeats', '2.5'])))
      .toBe("invalid --repeats '2.5': expected an integer >= 1");
    expect(refusal(() => parseBenchClassifierOptions(['--batches', '1,0'])))
      .toBe("invalid --batches '1,0': expected a comma-separated list of integers >= 1");
  });

  it('reads its defaults and its flags', () => {
    expect(parseBenchClassifierOptions([])).toEqual({
      model: path.join(ROOT, 'models', 'default', 'model.ubj'),
      vectors: path.join(ROOT, 'models', 'default', 'test-vectors'),
      nthread: 1, seconds: 0.25, repeats: 5, batches: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    });
    expect(parseBenchClassifierOptions(['--model', '/m/x.ubj', '--nthread', '0', '--batches', '8,64'])).toMatchObject({
      model: '/m/x.ubj', vectors: '/m/test-vectors', nthread: 0, batches: [8, 64],
    });
    expect(parseBenchClassifierOptions(['-h'])).toBe('help');
  });
});

describe('rss-check', () => {
  it('refuses a bad --rows or --limit', () => {
    expect(refusal(() => parseRssCheckOptions(['--rows', '1e6x']))).toBe("invalid --rows '1e6x': expected an integer >= 1");
    expect(refusal(() => parseRssCheckOptions(['--limit', '-1']))).toBe("invalid --limit '-1': expected a number > 0");
    expect(refusal(() => parseRssCheckOptions(['--row', '5']))).toBe("unknown option '--row' (see --help)");
  });

  it('reads its defaults', () => {
    expect(parseRssCheckOptions([])).toEqual({ model: path.join(ROOT, 'models', 'default', 'model.ubj'), rows: 1_000_000, limitMb: 2 });
  });
});

describe('bench', () => {
  it('refuses bad counts, rates and modes', () => {
    expect(refusal(() => parseBenchOptions(['--records', '0']))).toBe("invalid --records '0': expected an integer >= 1");
    expect(refusal(() => parseBenchOptions(['--rates', '2000,fast'])))
      .toBe("invalid --rates '2000,fast': expected a comma-separated list of numbers > 0");
    expect(refusal(() => parseBenchOptions(['--rate', '10', '--rates', '20']))).toBe('--rate and --rates exclude each other');
    expect(refusal(() => parseBenchOptions(['--warmup-seconds', '-1']))).toBe("invalid --warmup-seconds '-1': expected a number >= 0");
    expect(refusal(() => parseBenchOptions(['--modes', 'default,turbo'])))
      .toBe("invalid --modes 'default,turbo': unknown mode 'turbo', expected batch-1, default, passthrough, exactly-once, shadow");
    expect(refusal(() => parseBenchOptions(['--guarantee', 'twice'])))
      .toBe("invalid --guarantee 'twice': expected at-least-once or exactly-once");
    expect(refusal(() => parseBenchOptions(['-X', 'linger.ms']))).toBe("invalid -X 'linger.ms': expected key=value");
  });

  it('reads its flags', () => {
    const opts = parseBenchOptions(['--brokers', 'b:1', '--records', '1000', '--rate', '500', '--modes', 'default,shadow',
      '--warmup-seconds', '0', '-X', 'linger.ms=2', '--guarantee', 'exactly-once']);
    expect(opts).not.toBe('help');
    if (opts === 'help') return;
    expect(opts.modes.map((m) => m.name)).toEqual(['default', 'shadow']);
    expect({ ...opts, modes: undefined }).toEqual({
      brokers: 'b:1', records: 1000, rates: [500], latencySeconds: 20, warmupSeconds: 0, random: false, modes: undefined,
      kafkaProperties: { 'linger.ms': '2' }, guarantee: 'exactly-once',
    });
  });
});

describe('demo', () => {
  it('refuses bad flags', () => {
    expect(refusal(() => parseDemoOptions(['--rate', 'fast']))).toBe("invalid --rate 'fast': expected a number >= 0");
    expect(refusal(() => parseDemoOptions(['--records', '0']))).toBe("invalid --records '0': expected an integer >= 1");
    expect(refusal(() => parseDemoOptions(['--records']))).toBe('missing value for --records');
    expect(refusal(() => parseDemoOptions(['--modes', 'x']))).toBe("unknown option '--modes' (see --help)");
  });

  it('reads its defaults and its flags', () => {
    expect(parseDemoOptions(['--brokers', 'b:1'])).toEqual({
      brokers: 'b:1', records: undefined, rate: 5000, file: path.join(ROOT, 'models', 'default', 'replay.ndjson.gz'),
      model: path.join(ROOT, 'models', 'default', 'model.ubj'), guarantee: 'at-least-once', kafkaProperties: {},
    });
    expect(parseDemoOptions(['--records', '20', '--rate', '0', '--guarantee', 'exactly-once', '--help'])).toBe('help');
    expect(parseDemoOptions(['--brokers', 'b:1', '--records', '20', '--rate', '0'])).toMatchObject({ records: 20, rate: 0 });
  });
});

describe('bench-kafka-floor', () => {
  it.each([
    [['abc'], "bench-kafka-floor: N must be a positive integer, got 'abc'"],
    [['1000', '0'], "bench-kafka-floor: PARTITIONS must be a positive integer, got '0'"],
  ])('refuses %j with exit 2, naming the argument', (args, message) => {
    const run = spawnSync('bash', [path.join(ROOT, 'scripts', 'bench-kafka-floor.sh'), ...args], { encoding: 'utf8' });
    expect({ status: run.status, stderr: run.stderr.trim() }).toEqual({ status: 2, stderr: message });
  });
});
