/**
 * Reads a Kafka client properties file (`--kafka-config`), the format kcat's `-F` and Kafka's own tools'
 * `--command-config` take: Java's `Properties.load` text format, read as UTF-8.
 *
 * - `key=value`, `key: value` or `key value`; whitespace around the separator is dropped.
 * - Lines whose first non-blank character is `#` or `!` are comments.
 * - A line ending in an odd number of backslashes continues on the next one, whose leading
 *   whitespace is dropped.
 * - `\t`, `\n`, `\r`, `\f` and `\uXXXX` are escapes; a backslash before any other character stands
 *   for that character (`\=`, `\:`, `\ `, `\\`, `\#`).
 */
import { readFileSync, statSync } from 'node:fs';

/** One property of the file, with the line it starts on (1-based) for error messages. */
export interface PropertyLine {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

/** A line of the file that is not a property; `line` is 1-based. */
export class PropertiesSyntaxError extends Error {
  override name = 'PropertiesSyntaxError';
  constructor(readonly line: number, message: string) {
    super(message);
  }
}

const BLANK = new Set([' ', '\t', '\f']);

function unescape(raw: string, line: number): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = raw[++i];
    if (next === undefined) break;
    if (next === 'u') {
      const hex = raw.slice(i + 1, i + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new PropertiesSyntaxError(line, `malformed \\u escape '\\u${hex}'`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 4;
    } else {
      out += ({ t: '\t', n: '\n', r: '\r', f: '\f' } as Record<string, string>)[next] ?? next;
    }
  }
  return out;
}

/** True when `text` ends in an odd number of backslashes: the last one escapes the line break. */
function continues(text: string): boolean {
  let n = 0;
  for (let i = text.length - 1; i >= 0 && text[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

/** Parses the text of a properties file into its properties, in file order (a repeated key appears twice). */
export function parseProperties(text: string): PropertyLine[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  const out: PropertyLine[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let logical = lines[i].replace(/^[ \t\f]+/, '');
    if (logical === '' || logical[0] === '#' || logical[0] === '!') continue;
    while (continues(logical)) {
      logical = logical.slice(0, -1);
      if (++i >= lines.length) break;
      logical += lines[i].replace(/^[ \t\f]+/, '');
    }
    // The key ends at the first separator (=, : or blank) that no backslash escapes.
    let end = 0;
    while (end < logical.length && !['=', ':'].includes(logical[end]) && !BLANK.has(logical[end])) {
      end += logical[end] === '\\' ? 2 : 1;
    }
    end = Math.min(end, logical.length);
    let v = end;
    while (v < logical.length && BLANK.has(logical[v])) v++;
    if (v < logical.length && (logical[v] === '=' || logical[v] === ':')) v++;
    while (v < logical.length && BLANK.has(logical[v])) v++;
    const key = unescape(logical.slice(0, end), start);
    if (key === '') throw new PropertiesSyntaxError(start, 'no property name before the separator');
    out.push({ key, value: unescape(logical.slice(v), start), line: start });
  }
  return out;
}

/** A properties file that cannot be used: unreadable, or a line that is not a property. */
export class KafkaConfigFileError extends Error {
  override name = 'KafkaConfigFileError';
}

/** The properties of `file`, and a warning when others than its owner may read it. */
export function readKafkaConfigFile(file: string): { properties: PropertyLine[]; warning?: string } {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new KafkaConfigFileError(`cannot read --kafka-config ${file}: ${e.code ?? e.message}`);
  }
  let properties: PropertyLine[];
  try {
    properties = parseProperties(text);
  } catch (err) {
    if (err instanceof PropertiesSyntaxError) throw new KafkaConfigFileError(`${file}:${err.line}: ${err.message}`);
    throw err;
  }
  // The file is where passwords belong instead of argv; group or world read access hands them to
  // other accounts on the host all the same.
  const readable = mode & 0o044;
  const warning = readable === 0 ? undefined
    : `${file} is readable by ${readable === 0o044 ? 'group and others' : readable & 0o040 ? 'its group' : 'others'} `
      + `(mode ${(mode & 0o777).toString(8).padStart(4, '0')}) and may hold secrets: chmod 600 it`;
  return { properties, warning };
}
