/**
 * The input side of the wire format, as configured: which framing a value may carry (`--input-framing`,
 * `--schema-registry`) and which format its payload is in (`--input-format`). Turns each consumed value
 * into a request in the model's column order, or the dead-letter reason why it cannot be one.
 */
import { decodePredictRequest } from '../codec';
import type { DecodeResult } from './decoded';
import { FramingError, isFramed, parseFrame } from './framing';
import { JsonRequestDecoder } from './json-request';
import type { SchemaRegistry } from './schema-registry';

/** The payload format of input values. */
export type InputFormat = 'protobuf' | 'json';
/** Whether input values may carry Schema Registry framing. */
export type InputFraming = 'none' | 'confluent';

/** What the decoder needs to know of the configuration and the model. */
export interface InputRules {
  readonly format: InputFormat;
  readonly framing: InputFraming;
  readonly numFeatures: number;
  readonly featureNames: readonly string[] | undefined;
  readonly allowMissingFeatures: boolean;
}

/** A bad pairing of input settings and model; the processor refuses to start (exit 2). */
export class InputRulesError extends Error {
  override readonly name = 'InputRulesError';
}

/** Decodes input values by the configured format and framing; see the module comment. */
export class RequestDecoder {
  private readonly json: JsonRequestDecoder | undefined;

  /** Throws an InputRulesError when the model cannot serve the format (JSON by name needs feature names). */
  constructor(private readonly rules: InputRules, private readonly registry?: SchemaRegistry) {
    if (rules.format === 'json') {
      if (rules.featureNames === undefined) {
        throw new InputRulesError('--input-format json needs a model with feature names (the trainer writes them; '
          + 'set booster.feature_names before saving a model of your own)');
      }
      this.json = new JsonRequestDecoder(rules);
    }
  }

  /** Whether {@link prepare} has anything to do: only a registry check needs a look-up before decoding. */
  get needsPreparing(): boolean {
    return this.registry !== undefined;
  }

  /** Looks up, once each, the schema ids that the framed values among `values` name. */
  async prepare(values: ReadonlyArray<Buffer | null | undefined>): Promise<void> {
    if (this.registry === undefined) return;
    const ids: number[] = [];
    for (const v of values) {
      if (v && isFramed(v) && v.length >= 5) ids.push(v.readInt32BE(1));
    }
    await this.registry.learn(ids);
  }

  /** Decodes one non-null value. Framed values need {@link prepare} first when a registry checks them. */
  decode(value: Buffer): DecodeResult {
    let payload = value;
    if (this.rules.framing === 'confluent' && isFramed(value)) {
      let frame;
      try {
        frame = parseFrame(value, this.rules.format === 'protobuf');
      } catch (err) {
        if (err instanceof FramingError) return { ok: false, reason: 'undecodable', message: `bad Schema Registry framing: ${err.message}` };
        throw err;
      }
      const incompatible = this.registry?.incompatibility(frame.schemaId, frame.messageIndexes);
      if (incompatible !== undefined) return { ok: false, reason: 'incompatible-schema', message: incompatible };
      payload = frame.payload;
    }
    if (this.json !== undefined) return this.json.decode(payload);
    try {
      return { ok: true, request: decodePredictRequest(payload) };
    } catch (err) {
      // Field number 0 does not exist, so a leading 0 is most likely a registry serializer's framing.
      const hint = this.rules.framing === 'none' && isFramed(value)
        ? ' (a leading 0 byte is Schema Registry framing: pass --input-framing confluent)' : '';
      return { ok: false, reason: 'undecodable', message: `${(err as Error).message}${hint}` };
    }
  }
}
