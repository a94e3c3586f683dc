/**
 * What an input decoder hands the validator: a request in the model's column order, or the reason the
 * value cannot become one. Every input format and framing ends in one of these two.
 */
import type { PredictRequest } from '../codec';
import type { InvalidRecord } from '../processor/score/validate';

/** A request decoded, features in the model's column order (NaN for a missing value). */
export interface Decoded {
  readonly ok: true;
  readonly request: PredictRequest;
}

/** The outcome of decoding one value. */
export type DecodeResult = Decoded | InvalidRecord;
