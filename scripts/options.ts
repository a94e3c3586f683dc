/**
 * The command lines of the tools in scripts/ (demo, bench, bench-classifier, rss-check), read with
 * Node's util.parseArgs. A bad command line is a UsageError that names the flag and what it takes;
 * each tool prints it and exits 2, as the processor does for a bad flag.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { addKafkaProperty, ConfigError } from '../lib/config';

/** A flag that is unknown, lacks its value or has a value out of range. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The flags a tool takes, as util.parseArgs describes them. */
export type FlagSpec = Readonly<Record<string, {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
}>>;

/** The flags given, by name: a string (or strings, for a repeatable flag) or true; absent when not given. */
export type FlagValues<S extends FlagSpec> = {
  readonly [K in keyof S]?: S[K]['type'] extends 'string'
    ? (S[K]['multiple'] extends true ? string[] : string)
    : (S[K]['multiple'] extends true ? boolean[] : boolean);
};

/**
 * Reads `argv` (without node and the script) against `spec`. util.parseArgs's strict mode would also
 * refuse these, but in words about positional arguments and dashes; the tokens let each refusal name
 * the flag the way the processor's own errors do.
 */
export function readFlags<S extends FlagSpec>(argv: readonly string[], spec: S): FlagValues<S> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, flag] of Object.entries(spec)) options[name] = { ...flag };
  const { values, tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind === 'positional') throw new UsageError(`unexpected argument '${token.value}' (see --help)`);
    if (token.kind === 'option-terminator') throw new UsageError("unexpected argument '--' (see --help)");
    const flag = spec[token.name];
    if (flag === undefined) throw new UsageError(`unknown option '${token.rawName}' (see --help)`);
    // `--records --rate 5` would take '--rate' as the number of records: a flag's name is never its value.
    const valueIsFlag = token.inlineValue === false && token.value?.startsWith('--') === true
      && spec[token.value.slice(2).split('=')[0]] !== undefined;
    if (flag.type === 'string' && (token.value === undefined || valueIsFlag)) {
      throw new UsageError(`missing value for ${token.rawName}`);
    }
    if (flag.type === 'boolean' && token.value !== undefined) {
      throw new UsageError(`${token.rawName} takes no value (given '${token.value}')`);
    }
  }
  return values as FlagValues<S>;
}

/** What a number flag accepts. */
export interface NumberRule {
  readonly min: number;
  /** The value must be above `min`, not equal to it. */
  readonly aboveMin?: boolean;
  readonly integer?: boolean;
  readonly max?: number;
}

// Decimal notation only: Number() would also take '', ' ', '0x10' and 'Infinity'.
const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** The number a flag's text holds, or `fallback` when the flag was not given. */
export function numberFlag(flag: string, raw: string | undefined, fallback: number, rule: NumberRule): number {
  if (raw === undefined) return fallback;
  const n = DECIMAL.test(raw) ? Number(raw) : NaN;
  if (!fits(n, rule)) {
    throw new UsageError(`invalid ${flag} '${raw}': expected ${expected(rule)}`);
  }
  return n;
}

/** The numbers of a comma-separated flag, each as {@link numberFlag} takes it; `fallback` when not given. */
export function numberListFlag(flag: string, raw: string | undefined, fallback: readonly number[], rule: NumberRule): number[] {
  if (raw === undefined) return [...fallback];
  const items = raw.split(',').map((s) => s.trim());
  const n = items.map((s) => (DECIMAL.test(s) ? Number(s) : NaN));
  if (!n.every((v) => fits(v, rule))) {
    throw new UsageError(`invalid ${flag} '${raw}': expected a comma-separated list of ${expected(rule, true)}`);
  }
  return n;
}

function fits(n: number, rule: NumberRule): boolean {
  return Number.isFinite(n) && (rule.integer !== true || Number.isInteger(n))
    && (rule.aboveMin === true ? n > rule.min : n >= rule.min) && (rule.max === undefined || n <= rule.max);
}

function expected(rule: NumberRule, plural = false): string {
  const kind = rule.integer === true ? (plural ? 'integers' : 'an integer') : (plural ? 'numbers' : 'a number');
  return rule.max === undefined ? `${kind} ${rule.aboveMin === true ? '>' : '>='} ${rule.min}`
    : `${kind} from ${rule.min} to ${rule.max}`;
}

/** The librdkafka properties of repeated `-X key=value` flags, as the processor reads its own. */
export function kafkaPropertyFlags(raws: readonly string[] | undefined): Record<string, string> {
  const properties: Record<string, string> = {};
  try {
    for (const raw of raws ?? []) addKafkaProperty(raw, '-X', properties);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  return properties;
}

/**
 * True when `filename` is the script that was run (scripts/run-ts.js puts it in argv[1]), false when a
 * test imported it for its parser.
 */
export function isMainScript(filename: string): boolean {
  return process.argv[1] !== undefined && path.resolve(process.argv[1]) === filename;
}
