/**
 * The `json` input format: a PredictRequest written as JSON, with the features either by the model's
 * feature names or as a vector in column order.
 *
 *     {"recordID": "tx-1", "features": {"amount": 12.5, "hour": 3, ...}}
 *     {"recordID": "tx-1", "featuresVector": [12.5, 3, ...]}
 *
 * By name, the model's own feature_names decide the column each value goes to, so a producer can never
 * send columns in the wrong order unnoticed. A null value is missing (NaN to xgboost), like an absent
 * name, and both are accepted only with --allow-missing-features. Fields it does not know are ignored,
 * as protobuf readers ignore unknown fields.
 */
import { isUtf8 } from 'node:buffer';
import type { DecodeResult } from './decoded';
import { DuplicateKeyError, parseJsonStrict, type JsonValue } from './json-value';

/** The largest finite float32: a JSON number beyond it cannot be a feature. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** How JSON requests map onto the model's columns. */
export interface JsonRequestRules {
  readonly numFeatures: number;
  /** The model's feature names in column order; undefined when it has none (then only featuresVector). */
  readonly featureNames: readonly string[] | undefined;
  /** An absent or null named feature is scored as missing instead of dead-lettered. */
  readonly allowMissingFeatures: boolean;
}

/** A prepared JSON decoder for one model's columns. */
export class JsonRequestDecoder {
  private readonly column: Map<string, number> | undefined;

  constructor(private readonly rules: JsonRequestRules) {
    this.column = rules.featureNames === undefined
      ? undefined
      : new Map(rules.featureNames.map((name, i) => [name, i]));
  }

  /** Decodes one value; every problem is a dead-letter reason with a message naming the field. */
  decode(value: Buffer): DecodeResult {
    if (!isUtf8(value)) return { ok: false, reason: 'undecodable', message: 'the JSON request is not valid UTF-8' };
    let parsed: JsonValue;
    try {
      parsed = parseJsonStrict(value.toString('utf8'));
    } catch (err) {
      if (err instanceof DuplicateKeyError) return { ok: false, reason: 'duplicate-key', message: err.message };
      return { ok: false, reason: 'undecodable', message: `not JSON: ${(err as Error).message}` };
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      return { ok: false, reason: 'undecodable', message: `the JSON request is ${describe(parsed)}, not an object` };
    }
    const { recordID = '', features, featuresVector } = parsed;
    if (typeof recordID !== 'string') {
      return { ok: false, reason: 'undecodable', message: `recordID is ${describe(recordID)}, not a string` };
    }
    if (features !== undefined && featuresVector !== undefined) {
      return { ok: false, reason: 'undecodable', message: 'the JSON request has both features and featuresVector' };
    }
    if (featuresVector !== undefined) return this.byColumn(recordID, featuresVector);
    if (features !== undefined) return this.byName(recordID, features);
    return { ok: false, reason: 'undecodable', message: 'the JSON request has neither features nor featuresVector' };
  }

  private byColumn(recordID: string, vector: JsonValue): DecodeResult {
    if (!Array.isArray(vector)) {
      return { ok: false, reason: 'undecodable', message: `featuresVector is ${describe(vector)}, not an array` };
    }
    const out = new Array<number>(vector.length);
    for (let i = 0; i < vector.length; i++) {
      const v = vector[i];
      // null is JSON's only way to say NaN; the validator applies --reject-missing to it like to a protobuf NaN.
      if (v === null) { out[i] = NaN; continue; }
      const bad = checkNumber(`featuresVector[${i}]`, v);
      if (bad) return bad;
      out[i] = v as number;
    }
    return { ok: true, request: { recordID, featuresVector: out } };
  }

  private byName(recordID: string, features: JsonValue): DecodeResult {
    if (this.column === undefined) {
      // The processor refuses --input-format json at start for such a model; a reload cannot bring one in
      // (the gate keeps the names), so this guards a library caller.
      return { ok: false, reason: 'unknown-feature', message: 'the model has no feature names: send featuresVector' };
    }
    if (features === null || typeof features !== 'object' || Array.isArray(features)) {
      return { ok: false, reason: 'undecodable', message: `features is ${describe(features)}, not an object` };
    }
    const out = new Array<number>(this.rules.numFeatures).fill(NaN);
    let given = 0;
    for (const name in features) {
      const v = features[name];
      const i = this.column.get(name);
      if (i === undefined) {
        return { ok: false, reason: 'unknown-feature', message: `feature '${name}' is not one of the model's ${this.rules.numFeatures}` };
      }
      if (v === null) continue;
      const bad = checkNumber(`feature '${name}'`, v);
      if (bad) return bad;
      out[i] = v as number;
      given++;
    }
    // Every name is known and none twice, so all were given exactly when the count is full.
    if (given < this.rules.numFeatures && !this.rules.allowMissingFeatures) {
      const missing = this.rules.featureNames!.filter((_, i) => Number.isNaN(out[i]));
      if (missing.length > 0) {
        const shown = missing.slice(0, 5).map((n) => `'${n}'`).join(', ') + (missing.length > 5 ? `, and ${missing.length - 5} more` : '');
        return {
          ok: false, reason: 'missing-feature',
          message: `feature${missing.length > 1 ? 's' : ''} ${shown} missing (--allow-missing-features scores them as missing)`,
        };
      }
    }
    return { ok: true, request: { recordID, featuresVector: out } };
  }
}

function checkNumber(what: string, v: JsonValue): DecodeResult | undefined {
  if (typeof v !== 'number') {
    return { ok: false, reason: 'non-numeric-feature', message: `${what} is ${describe(v)}, not a number` };
  }
  if (!(Math.abs(v) <= FLOAT32_MAX)) {
    return { ok: false, reason: 'feature-out-of-range', message: `${what} is ${v}, outside the float32 range (±3.4028235e38)` };
  }
  return undefined;
}

/** A value as an error message shows it: a short JSON rendering, or its kind. */
function describe(v: JsonValue | undefined): string {
  if (v === undefined) return 'absent';
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'an object';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
