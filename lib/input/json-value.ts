/**
 * A strict JSON parser that, unlike JSON.parse, refuses an object with the same key twice: JSON.parse
 * keeps the last value silently, so `{"amount": 10, "amount": 99999}` would score 99999 and nobody
 * would know. Otherwise it accepts what JSON.parse does, and refuses what RFC 8259 refuses (NaN,
 * trailing commas, comments). Returns plain values; numbers as doubles.
 */

/** Text that is not JSON; the message gives the offset. */
export class JsonSyntaxError extends Error {
  override readonly name = 'JsonSyntaxError';
}

/** An object that names one key twice. */
export class DuplicateKeyError extends Error {
  override readonly name = 'DuplicateKeyError';
  constructor(readonly key: string, readonly path: string) {
    super(`key '${key}' appears twice in ${path}`);
  }
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Deepest nesting accepted: a request is two levels deep, and recursion must not exhaust the stack. */
const MAX_DEPTH = 64;

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?/y;
const STRING_RUN = /[^"\\\u0000-\u001f]*/y;

/** Parses `text` as one JSON value. Throws JsonSyntaxError or DuplicateKeyError. */
export function parseJsonStrict(text: string): JsonValue {
  let at = 0;
  const fail = (what: string): never => {
    if (at >= text.length) throw new JsonSyntaxError(`unexpected end of input at offset ${at}`);
    const c = text[at];
    const hint = c === 'N' || c === 'I' ? ' (JSON has no NaN or Infinity: write null for a missing value)' : '';
    throw new JsonSyntaxError(`unexpected ${JSON.stringify(c)} at offset ${at}, expected ${what}${hint}`);
  };
  const skipSpace = (): void => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      at++;
    }
  };
  const parseString = (): string => {
    at++; // the opening quote
    let out = '';
    for (;;) {
      STRING_RUN.lastIndex = at;
      STRING_RUN.exec(text);
      out += text.slice(at, STRING_RUN.lastIndex);
      at = STRING_RUN.lastIndex;
      if (at >= text.length) fail('a closing quote');
      const c = text[at];
      if (c === '"') {
        at++;
        return out;
      }
      if (c !== '\\') fail('an escaped control character');
      const e = text[at + 1];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) {
        out += simple[e];
        at += 2;
      } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(at + 2, at + 6))) {
        out += String.fromCharCode(parseInt(text.slice(at + 2, at + 6), 16));
        at += 6;
      } else {
        at++;
        fail('an escape sequence');
      }
    }
  };
  const parseValue = (path: string, depth: number): JsonValue => {
    if (depth > MAX_DEPTH) throw new JsonSyntaxError(`nested deeper than ${MAX_DEPTH} levels at offset ${at}`);
    skipSpace();
    const c = text[at];
    if (c === '{') {
      at++;
      // No prototype: a key named __proto__ is plain data, and assignment stays fast.
      const obj: { [key: string]: JsonValue } = Object.create(null);
      const seen = new Set<string>();
      skipSpace();
      if (text[at] === '}') {
        at++;
        return obj;
      }
      for (;;) {
        skipSpace();
        if (text[at] !== '"') fail('a key');
        const key = parseString();
        if (seen.has(key)) throw new DuplicateKeyError(key, path);
        seen.add(key);
        skipSpace();
        if (text[at] !== ':') fail("':'");
        at++;
        const value = parseValue(`${path}.${key}`, depth + 1);
        obj[key] = value;
        skipSpace();
        if (text[at] === ',') { at++; continue; }
        if (text[at] === '}') { at++; return obj; }
        fail("',' or '}'");
      }
    }
    if (c === '[') {
      at++;
      const arr: JsonValue[] = [];
      skipSpace();
      if (text[at] === ']') {
        at++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(`${path}[${arr.length}]`, depth + 1));
        skipSpace();
        if (text[at] === ',') { at++; continue; }
        if (text[at] === ']') { at++; return arr; }
        fail("',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith('true', at)) { at += 4; return true; }
    if (text.startsWith('false', at)) { at += 5; return false; }
    if (text.startsWith('null', at)) { at += 4; return null; }
    NUMBER.lastIndex = at;
    const m = NUMBER.exec(text);
    if (m === null || m[0] === '' || m[0] === '-') return fail('a value');
    at += m[0].length;
    return Number(m[0]);
  };
  const value = parseValue('the request', 0);
  skipSpace();
  if (at < text.length) fail('the end of the value');
  return value;
}
