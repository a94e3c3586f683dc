/**
 * What the processor writes: the value of a scored record in the configured format, and the headers
 * that carry each output's provenance. Header names are the contract with downstream consumers.
 */
import type { Message, MessageHeader } from 'node-rdkafka';
import type { OutputFormat } from '../../config';
import { encodeScoreFloat, encodeScoredRecord, scoredRecordToJson, type ScoredRecord } from '../../codec';
import type { DeadLetterReason } from './validate';

/** Provenance and error header names, all under `xgb.` so they never clash with carried-over input headers. */
export const HEADER = Object.freeze({
  /** `<topic>/<partition>/<offset> <model version>` in one header: the `float` format's provenance. */
  provenance: 'xgb.provenance',
  sourceTopic: 'xgb.source.topic',
  sourcePartition: 'xgb.source.partition',
  sourceOffset: 'xgb.source.offset',
  modelVersion: 'xgb.model.version',
  errorReason: 'xgb.error.reason',
  errorMessage: 'xgb.error.message',
  /** On a dead letter whose value was cut to fit the size limit: the input value's full length. */
  errorOriginalSize: 'xgb.error.original-size',
  /** `true` on a dead letter whose value was cut to fit the size limit. */
  errorTruncated: 'xgb.error.truncated',
});

/** Where an output came from. */
export interface Source {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly headers?: readonly MessageHeader[];
}

/** One record to write: what the score stage builds and the deliver stage produces. */
export interface Output {
  readonly topic: string;
  readonly value: Buffer | null;
  readonly key: Buffer | string | null | undefined;
  readonly headers: MessageHeader[] | undefined;
  /** Why the record is a dead letter; undefined for a scored output. */
  readonly deadLetterReason: DeadLetterReason | undefined;
  /** The input's timestamp, for the end-to-end latency metric. */
  readonly eventTimestampMs: number;
  /** The input record it was made from: an output the broker rejects becomes a dead letter of it. */
  readonly source: Message;
  /** Why nothing is written for this record, when not even a cut dead-letter copy fits the limit. */
  readonly skipped?: string;
  /** The shadow model's ScoredRecord of this record, for --shadow-topic. */
  readonly shadow?: ShadowOutput;
}

/** A shadow model's output: written beside the scored one, not tracked for offsets (best effort). */
export interface ShadowOutput {
  readonly topic: string;
  readonly key: string;
  readonly value: Buffer;
}

/**
 * What framing adds to a record on the wire, generously: a record batch header (61 bytes, a record
 * alone in its batch) and the record's own length, attributes, deltas and varint lengths.
 */
const RECORD_OVERHEAD_BYTES = 61 + 32;
/** Per header: its varint lengths. */
const HEADER_OVERHEAD_BYTES = 10;

function byteLength(bytes: Buffer | string | null | undefined): number {
  if (bytes === null || bytes === undefined) return 0;
  return typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.length;
}

/** An upper estimate of a record's size as the producer and the broker count it against their limits. */
export function recordBytes(key: Buffer | string | null | undefined, value: Buffer | null | undefined,
  headers: readonly MessageHeader[] | undefined): number {
  let n = RECORD_OVERHEAD_BYTES + byteLength(key) + byteLength(value);
  for (const h of headers ?? []) {
    for (const k of Object.keys(h)) n += HEADER_OVERHEAD_BYTES + byteLength(k) + byteLength(h[k] as Buffer | string);
  }
  return n;
}

/** The input's timestamp, or `fallback` when its producer set none. */
export function eventTimeOf(message: Message, fallback: number): number {
  return message.timestamp !== undefined && message.timestamp >= 0 ? message.timestamp : fallback;
}

/**
 * A dead letter of `source`: its key, value and headers byte for byte, plus provenance and the error.
 * When that copy is larger than `maxBytes`, the value is cut to what fits, and the headers
 * `xgb.error.original-size` and `xgb.error.truncated` say so. When not even an empty value fits (a huge
 * key or headers), the output is marked skipped.
 */
export function deadLetterOutput(source: Message, topic: string, reason: DeadLetterReason, message: string,
  maxBytes: number): Output {
  const headers = deadLetterHeaders(source, reason, message);
  const base = { topic, key: source.key, deadLetterReason: reason, eventTimestampMs: eventTimeOf(source, Date.now()), source };
  const size = recordBytes(source.key, source.value, headers);
  if (size <= maxBytes) return { ...base, value: source.value, headers };
  const originalSize = byteLength(source.value);
  headers.push({ [HEADER.errorOriginalSize]: String(originalSize) }, { [HEADER.errorTruncated]: 'true' });
  const room = maxBytes - recordBytes(source.key, null, headers);
  if (room >= 0 && source.value) return { ...base, value: source.value.subarray(0, room), headers };
  return {
    ...base, value: null, headers,
    skipped: `the dead-letter copy is ${size} bytes, and ${maxBytes - room} even with an empty value, `
      + `more than the ${maxBytes}-byte limit`,
  };
}

/** Encodes a scored record as the value of the configured output format. */
export function encodeOutputValue(format: OutputFormat, record: ScoredRecord): Buffer {
  switch (format) {
    case 'protobuf': return encodeScoredRecord(record);
    case 'json': return scoredRecordToJson(record);
    case 'float': return encodeScoreFloat(record.score);
  }
}

/** The value of the compact `xgb.provenance` header. Topic names hold no space or slash, so it splits back. */
function provenanceHeaderValue(source: Source, modelVersion: string): string {
  return `${source.topic}/${source.partition}/${source.offset} ${modelVersion}`;
}

function sourceHeaders(source: Source): MessageHeader[] {
  return [
    { [HEADER.sourceTopic]: source.topic },
    { [HEADER.sourcePartition]: String(source.partition) },
    { [HEADER.sourceOffset]: String(source.offset) },
  ];
}

/**
 * Headers of a scored output: the input's own headers, then the provenance the value cannot hold.
 * The protobuf and json values carry the source position and model version themselves, so they get no
 * header of ours; the `float` value is the bare score, so one compact `xgb.provenance` header carries
 * them. `namedHeaders` adds the four separate `xgb.source.*`/`xgb.model.version` headers for consumers
 * that read those (each header costs the producer about a microsecond). Undefined when there are none.
 */
export function scoredHeaders(
  source: Source, modelVersion: string, format: OutputFormat, namedHeaders: boolean,
): MessageHeader[] | undefined {
  const own = source.headers ?? [];
  if (format !== 'float' && !namedHeaders) return own.length > 0 ? [...own] : undefined;
  const headers = [...own];
  if (format === 'float') headers.push({ [HEADER.provenance]: provenanceHeaderValue(source, modelVersion) });
  if (namedHeaders) headers.push(...sourceHeaders(source), { [HEADER.modelVersion]: modelVersion });
  return headers;
}

/** Headers of a dead letter: the input's own headers, then source position and the error. */
export function deadLetterHeaders(source: Source, reason: DeadLetterReason, message: string): MessageHeader[] {
  return [...(source.headers ?? []), ...sourceHeaders(source),
    { [HEADER.errorReason]: reason }, { [HEADER.errorMessage]: message }];
}
