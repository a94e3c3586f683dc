/**
 * What a model file says about itself before libxgboost reads it: its format, and the xgboost release
 * that saved it. libxgboost checks neither: a newer release's model loads without a word and may be
 * scored wrongly (3.1 changed how the intercept is stored), and 3.1 and later no longer read the legacy
 * binary format at all. The Classifier refuses both cases with the typed errors below.
 */

/**
 * The formats xgboost saves: JSON, UBJSON, and the binary format that 3.1 dropped; `unknown` for
 * bytes that are none of them, which the Classifier refuses as not a model.
 */
export type ModelFormat = 'json' | 'ubj' | 'legacy-binary' | 'unknown';

/** A model that the Classifier refuses to load, with the reason as a stable `code`. */
export class ModelLoadError extends Error {
  constructor(
    /** Where the model came from: its path, or "a N-byte buffer". */
    readonly source: string,
    /** Why, for programs: one of the codes of the subclasses. */
    readonly code: 'MODEL_TOO_NEW' | 'LEGACY_BINARY_MODEL' | 'UNSUPPORTED_OBJECTIVE' | 'MODEL_WITHOUT_VERSION' |
      'NOT_A_MODEL',
    reason: string,
  ) {
    super(`Cannot load XGBoost model from ${source}: ${reason}`);
    this.name = new.target.name;
  }
}

/** The model was saved by a newer xgboost release than the libxgboost that would score it. */
export class ModelVersionError extends ModelLoadError {
  constructor(source: string, readonly modelVersion: string, readonly libraryVersion: string) {
    super(source, 'MODEL_TOO_NEW', `it was saved by xgboost ${modelVersion}, newer than the libxgboost ` +
      `${libraryVersion} that would score it, which may read it wrongly. Save it with xgboost ` +
      `${libraryVersion} or older, or build xgb-stream against a libxgboost ≥ ${modelVersion} (XGBOOST_ROOT)`);
  }
}

/** The model is in the legacy binary format, which libxgboost 3.1 and later cannot read. */
export class LegacyBinaryModelError extends ModelLoadError {
  constructor(source: string, readonly libraryVersion: string) {
    super(source, 'LEGACY_BINARY_MODEL', `it is in xgboost's legacy binary format, which libxgboost ` +
      `${libraryVersion} cannot read (3.1 dropped it). Convert it once to UBJSON: ` +
      "'npm run convert-model -- MODEL.bin MODEL.ubj'");
  }
}

/** The model's objective does not give the probability of the positive class. */
export class UnsupportedObjectiveError extends ModelLoadError {
  constructor(source: string, readonly objective: string) {
    super(source, 'UNSUPPORTED_OBJECTIVE', `its objective is ${objective}, which does not give a probability ` +
      `of the positive class; the Classifier scores ${PROBABILITY_OBJECTIVES.join(' and ')} models only`);
  }
}

/** Objectives whose transformed output is the probability of the positive class. */
export const PROBABILITY_OBJECTIVES: readonly string[] = ['binary:logistic', 'reg:logistic'];

/**
 * The format, sniffed as xgboost sniffs it: an object that opens with a quoted key is JSON, and one
 * that opens with a UBJSON length marker is UBJSON. The legacy binary format is recognised by its
 * layout: an optional "binf" tag, the 136-byte LearnerModelParam, then the objective's and the
 * booster's names as length-prefixed strings ("binary:logistic", "gbtree").
 */
export function modelFormat(bytes: Uint8Array): ModelFormat {
  let i = 0;
  while (i < bytes.length && isJsonSpace(bytes[i])) i++;
  if (bytes[i] === 0x7b /* { */) {
    if (i === 0 && UBJ_LENGTH_MARKERS.has(bytes[1])) return 'ubj';
    i++;
    while (i < bytes.length && isJsonSpace(bytes[i])) i++;
    return bytes[i] === 0x22 /* " */ || bytes[i] === 0x7d /* } */ ? 'json' : 'unknown';
  }
  return isLegacyBinary(bytes) ? 'legacy-binary' : 'unknown';
}

const LEGACY_PARAM_BYTES = 136;

function isLegacyBinary(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = buf.toString('latin1', 0, 4) === 'binf' ? 4 : 0;
  at += LEGACY_PARAM_BYTES;
  const names: string[] = [];
  for (let k = 0; k < 2; k++) {
    if (at + 8 > buf.length) return false;
    const length = Number(buf.readBigUInt64LE(at));
    if (length < 1 || length > 64 || at + 8 + length > buf.length) return false;
    names.push(buf.toString('latin1', at + 8, at + 8 + length));
    at += 8 + length;
  }
  return /^[a-z]+:[a-z_]+$/.test(names[0]) && /^(gbtree|gblinear|dart)$/.test(names[1]);
}

/**
 * The xgboost release that saved a JSON or UBJSON model: its top-level `version` field, e.g.
 * `[3, 4, 1]` as "3.4.1". Undefined when the field is missing or not three integers.
 * @throws Error when the bytes are not a well-formed document of that format.
 */
export function savedByVersion(bytes: Uint8Array, format: 'json' | 'ubj'): string | undefined {
  const version = format === 'json'
    ? (JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as
      Record<string, unknown>).version
    : new UbjReader(bytes).topLevelField('version');
  if (!Array.isArray(version) || version.length !== 3 || !version.every((n) => Number.isInteger(n) && n >= 0)) {
    return undefined;
  }
  return version.join('.');
}

/** Orders "major.minor.patch" strings numerically: negative when a < b, 0 when equal. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  }
  return 0;
}

function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** The integer markers that can open a UBJSON object key (its length). */
const UBJ_LENGTH_MARKERS = new Set(['i', 'U', 'I', 'l', 'L'].map((c) => c.charCodeAt(0)));
/** Byte sizes of UBJSON's fixed-size value types. */
const UBJ_FIXED_SIZE: Record<string, number> = { Z: 0, N: 0, T: 0, F: 0, i: 1, U: 1, C: 1, I: 2, l: 4, d: 4, L: 8, D: 8 };

/**
 * A reader of just enough UBJSON (big-endian, with optimised containers) to find one top-level
 * field of an xgboost model without building the whole document: every other value is skipped,
 * and typed arrays of numbers (the trees' split values and weights) are skipped in one step.
 */
class UbjReader {
  private at = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** The value of `key` in the top-level object, read as plain JavaScript; undefined when absent. */
  topLevelField(key: string): unknown {
    if (this.marker() !== '{') throw new Error('UBJSON model does not start with an object');
    let found: unknown;
    this.container('}', false, (typed) => {
      const name = this.string();
      if (name === key) found = this.value(typed);
      else this.skip(typed ?? this.marker());
    });
    return found;
  }

  private marker(): string {
    if (this.at >= this.bytes.length) throw new Error('UBJSON model is truncated');
    return String.fromCharCode(this.bytes[this.at++]);
  }

  private need(n: number): number {
    if (n < 0 || this.at + n > this.bytes.length) throw new Error('UBJSON model is truncated');
    const start = this.at;
    this.at += n;
    return start;
  }

  private integer(marker: string): number {
    switch (marker) {
      case 'i': return this.view.getInt8(this.need(1));
      case 'U': return this.view.getUint8(this.need(1));
      case 'I': return this.view.getInt16(this.need(2));
      case 'l': return this.view.getInt32(this.need(4));
      case 'L': return Number(this.view.getBigInt64(this.need(8)));
      default: throw new Error(`UBJSON model has '${marker}' where an integer belongs`);
    }
  }

  private string(): string {
    const length = this.integer(this.marker());
    const start = this.need(length);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, length).toString('utf8');
  }

  /**
   * Walks the items of an array (`]`) or object (`}`) whose opening marker was just read, calling
   * `item` once per item with the reader at its start. Handles the optimised `$type#count` and
   * `#count` forms: in a typed container the items have no marker of their own, and `item` gets the
   * type. With `skipFixed`, a typed array of fixed-size values is passed over in one step.
   */
  private container(close: string, skipFixed: boolean, item: (typed?: string) => void): void {
    let type: string | undefined;
    let count: number | undefined;
    let m = this.marker();
    if (m === '$') {
      type = this.marker();
      m = this.marker();
      if (m !== '#') throw new Error('UBJSON model has a typed container without a count');
    }
    if (m === '#') {
      count = this.integer(this.marker());
    } else {
      this.at--;
    }
    if (count !== undefined) {
      const size = type !== undefined ? UBJ_FIXED_SIZE[type] : undefined;
      if (skipFixed && size !== undefined && close === ']') {
        this.need(size * count);
        return;
      }
      for (let i = 0; i < count; i++) item(type);
      return;
    }
    for (;;) {
      if (String.fromCharCode(this.bytes[this.at]) === close) {
        this.at++;
        return;
      }
      if (this.at >= this.bytes.length) throw new Error('UBJSON model is truncated');
      item();
    }
  }

  /** Reads one value (marker included, or of the container's `typed` type) as JavaScript. */
  private value(typed?: string): unknown {
    const m = typed ?? this.marker();
    switch (m) {
      case 'i': case 'U': case 'I': case 'l': case 'L': return this.integer(m);
      case 'S': return this.string();
      case '[': {
        const items: unknown[] = [];
        this.container(']', false, (typed) => items.push(this.value(typed)));
        return items;
      }
      default:
        this.skip(m);
        return undefined;
    }
  }

  /** Skips one value whose marker `m` was just read. */
  private skip(m: string): void {
    const size = UBJ_FIXED_SIZE[m];
    if (size !== undefined) {
      this.need(size);
      return;
    }
    switch (m) {
      case 'S': case 'H': this.need(this.integer(this.marker())); return;
      case '[': this.container(']', true, (typed) => this.skip(typed ?? this.marker())); return;
      case '{': this.container('}', true, (typed) => { this.string(); this.skip(typed ?? this.marker()); }); return;
      default: throw new Error(`UBJSON model has an unknown marker '${m}'`);
    }
  }
}
