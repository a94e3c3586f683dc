/**
 * What the processor writes: the value of a scored record in the configured format, and the headers
 * that carry each output's provenance. Header names are the contract with downstream consumers.
 */
import type { MessageHeader } from 'node-rdkafka';
import type { OutputFormat } from '../config';
import { encodeScoreFloat, encodeScoredRecord, scoredRecordToJson, type ScoredRecord } from '../codec';
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
export function provenanceHeaderValue(source: Source, modelVersion: string): string {
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
