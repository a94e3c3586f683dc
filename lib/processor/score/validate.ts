/**
 * Turns one consumed Kafka value into a scorable row or the reason it cannot be scored. Pure: the
 * processor decides where each outcome goes. Decoding (format and framing) is lib/input's; the checks
 * here hold for every format.
 */
import { decodePredictRequest } from '../../codec';
import type { DecodeResult } from '../../input/decoded';

/** Why a record goes to the dead-letter topic: the values of its `xgb.error.reason` header. */
export const DEAD_LETTER_REASONS = [
  'null-value', 'undecodable', 'empty-record-id', 'record-id-too-long', 'wrong-feature-count',
  'non-finite-feature', 'missing-feature', 'scoring-failed', 'output-too-large',
  'unknown-feature', 'non-numeric-feature', 'feature-out-of-range', 'duplicate-key', 'incompatible-schema',
] as const;

/** Why a record went to the dead-letter topic; the value of its `xgb.error.reason` header. */
export type DeadLetterReason = typeof DEAD_LETTER_REASONS[number];

/** A record ready to score. */
export interface ValidRecord {
  readonly ok: true;
  readonly recordID: string;
  readonly features: readonly number[];
}

/** A record that cannot be scored, with a reason code and a human-readable message. */
export interface InvalidRecord {
  readonly ok: false;
  readonly reason: DeadLetterReason;
  readonly message: string;
}

/** What a valid request must satisfy. */
export interface RequestRules {
  readonly numFeatures: number;
  /** Dead-letter NaN features instead of scoring them as missing. */
  readonly rejectMissing: boolean;
  /** Longest recordID, in UTF-8 bytes: it is written twice into each output (key and value). */
  readonly maxRecordIdBytes: number;
}

/** The default decoder: a bare protobuf PredictRequest. */
function decodeProtobuf(value: Buffer): DecodeResult {
  try {
    return { ok: true, request: decodePredictRequest(value) };
  } catch (err) {
    return { ok: false, reason: 'undecodable', message: (err as Error).message };
  }
}

/**
 * Decodes a value with `decode` (a bare protobuf PredictRequest unless told otherwise) and checks the
 * request. NaN is xgboost's "missing" and is scored as such unless `rejectMissing` is set; ±Infinity is
 * never a valid feature.
 */
export function validateRequest(value: Buffer | null | undefined, rules: RequestRules,
  decode: (value: Buffer) => DecodeResult = decodeProtobuf): ValidRecord | InvalidRecord {
  const { numFeatures, rejectMissing, maxRecordIdBytes } = rules;
  if (value === null || value === undefined) {
    return { ok: false, reason: 'null-value', message: 'record has a null value' };
  }
  const decoded = decode(value);
  if (!decoded.ok) return decoded;
  const request = decoded.request;
  if (request.recordID === '') {
    return { ok: false, reason: 'empty-record-id', message: 'recordID is empty' };
  }
  // A recordID has at least as many bytes as characters: the byte count is taken only near the bound.
  if (request.recordID.length * 3 > maxRecordIdBytes) {
    const bytes = Buffer.byteLength(request.recordID, 'utf8');
    if (bytes > maxRecordIdBytes) {
      return {
        ok: false, reason: 'record-id-too-long',
        message: `recordID is ${bytes} bytes, more than the ${maxRecordIdBytes} allowed (--max-record-id-bytes)`,
      };
    }
  }
  const features = request.featuresVector;
  if (features.length !== numFeatures) {
    return {
      ok: false, reason: 'wrong-feature-count',
      message: `expected ${numFeatures} features, got ${features.length}`,
    };
  }
  for (let i = 0; i < features.length; i++) {
    const v = features[i];
    if (Number.isNaN(v)) {
      if (rejectMissing) {
        return { ok: false, reason: 'missing-feature', message: `feature ${i} is NaN (missing)` };
      }
    } else if (!Number.isFinite(v)) {
      return { ok: false, reason: 'non-finite-feature', message: `feature ${i} is ${v}` };
    }
  }
  return { ok: true, recordID: request.recordID, features };
}
