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

/** Encodes a scored record as the value of the configured output format. */
export function encodeOutputValue(format: OutputFormat, record: ScoredRecord): Buffer {
  switch (format) {
    case 'protobuf': return encodeScoredRecord(record);
    case 'json': return scoredRecordToJson(record);
    case 'float': return encodeScoreFloat(record.score);
  }
}

function provenance(source: Source): MessageHeader[] {
  return [
    ...(source.headers ?? []),
    { [HEADER.sourceTopic]: source.topic },
    { [HEADER.sourcePartition]: String(source.partition) },
    { [HEADER.sourceOffset]: String(source.offset) },
  ];
}

/** Headers of a scored output: the input's own headers, then source position and model version. */
export function scoredHeaders(source: Source, modelVersion: string): MessageHeader[] {
  return [...provenance(source), { [HEADER.modelVersion]: modelVersion }];
}

/** Headers of a dead letter: the input's own headers, then source position and the error. */
export function deadLetterHeaders(source: Source, reason: DeadLetterReason, message: string): MessageHeader[] {
  return [...provenance(source), { [HEADER.errorReason]: reason }, { [HEADER.errorMessage]: message }];
}
