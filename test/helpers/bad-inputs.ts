/**
 * Inputs the processor must dead-letter or skip, shared by the tests of both data paths: every reason
 * a request is refused, and records whose outputs or dead-letter copies do not fit a size limit.
 */
import type { Message } from 'node-rdkafka';
import { encodePredictRequest } from '../../lib/codec';
import { header, type OutgoingRecord } from './kafka';

/** An input that must become a dead letter with this reason and a message containing `message`. */
export interface BadInput {
  readonly reason: string;
  readonly message: string;
  readonly record: OutgoingRecord;
}

/** Every kind of bad PredictRequest, built around a valid row of features. */
export function badRequests(features: readonly number[]): BadInput[] {
  const request = (recordID: string, featuresVector: readonly number[]): Buffer =>
    encodePredictRequest({ recordID, featuresVector: [...featuresVector] });
  return [
    { reason: 'undecodable', message: 'undecodable PredictRequest', record: { key: 'bad-bytes', value: Buffer.from([0x0a, 0x7f, 0x01]) } },
    { reason: 'undecodable', message: 'not valid UTF-8',
      record: { key: 'bad-utf8', value: Buffer.concat([Buffer.from([0x0a, 0x02, 0xc3, 0x28]), request('', features)]) } },
    { reason: 'wrong-feature-count', message: 'expected 10 features, got 9', record: { key: 'short', value: request('short', features.slice(0, 9)) } },
    { reason: 'non-finite-feature', message: 'feature 3 is Infinity',
      record: { key: 'inf', value: request('inf', features.map((v, i) => (i === 3 ? Infinity : v))) } },
    { reason: 'non-finite-feature', message: 'feature 0 is -Infinity',
      record: { key: 'ninf', value: request('ninf', features.map((v, i) => (i === 0 ? -Infinity : v))) } },
    { reason: 'empty-record-id', message: 'recordID is empty', record: { key: 'empty', value: request('', features) } },
    { reason: 'null-value', message: 'record has a null value', record: { key: 'null', value: null } },
    // An empty value (0 bytes, not null) is a PredictRequest with every field at its default. Sent as
    // zero-length views: node-rdkafka writes a zero-length Buffer of its own as null.
    { reason: 'empty-record-id', message: 'recordID is empty',
      record: { key: Buffer.alloc(1).subarray(0, 0), value: Buffer.alloc(1).subarray(0, 0) } },
    { reason: 'record-id-too-long', message: 'recordID is 5000 bytes, more than the 4096 allowed (--max-record-id-bytes)',
      record: { key: 'long', value: request('x'.repeat(5000), features) } },
  ];
}

/** Good and bad inputs alternating (good first), each bad one with an `origin` header naming it. */
export function interleave(good: readonly OutgoingRecord[], bad: readonly BadInput[]): OutgoingRecord[] {
  if (good.length < bad.length) throw new Error(`${bad.length} bad inputs need as many good ones, not ${good.length}`);
  const input: OutgoingRecord[] = [];
  good.forEach((g, i) => {
    input.push(g);
    if (i < bad.length) input.push({ ...bad[i].record, headers: [{ origin: `bad-${i}` }] });
  });
  return input;
}

/**
 * The dead letters of interleave()'s bad inputs, in order: each a byte-for-byte copy of its input (a
 * null value stays null, an empty value and an empty key stay empty) with its reason, message and source.
 */
export function expectDeadLetterCopies(dead: readonly Message[], bad: readonly BadInput[], inputTopic: string): void {
  expect(dead).toHaveLength(bad.length);
  bad.forEach((b, i) => {
    const m = dead[i];
    if (Buffer.isBuffer(b.record.key)) expect(Buffer.compare(m.key as Buffer, b.record.key)).toBe(0);
    else expect(m.key?.toString()).toBe(b.record.key);
    if (b.record.value === null) expect(m.value).toBeNull();
    else expect(Buffer.compare(m.value!, b.record.value)).toBe(0);
    expect(header(m, 'xgb.error.reason')).toBe(b.reason);
    expect(header(m, 'xgb.error.message')).toContain(b.message);
    expect(header(m, 'origin')).toBe(`bad-${i}`);
    expect(header(m, 'xgb.source.topic')).toBe(inputTopic);
    expect(header(m, 'xgb.source.partition')).toBe('0');
    expect(header(m, 'xgb.source.offset')).toBe(String(2 * i + 1));
  });
}

/** Inputs around a size limit (`--max-message-bytes`), with valid requests `v0`..`v4` between them. */
export interface OversizeInputs {
  readonly input: OutgoingRecord[];
  /** The key of an input of which not even an empty dead-letter copy fits. */
  readonly hugeKey: string;
  /** The value of an undecodable input whose copy is cut to fit (key `cut`). */
  readonly undecodable: Buffer;
}

/**
 * `long`: a request whose scored output is over the limit (its recordID is `longIdBytes` long); a
 * request like it whose input key alone is over the limit; an undecodable input with such a key; and
 * `cut`, an undecodable input over the limit. `row(i)` gives the features of row i.
 */
export function oversizeInputs(limit: number, longIdBytes: number, row: (i: number) => number[]): OversizeInputs {
  const request = (key: string, recordID: string, i: number): OutgoingRecord => (
    { key, value: encodePredictRequest({ recordID, featuresVector: row(i) }) });
  const hugeKey = 'K'.repeat(limit + 1_000);
  const undecodable = Buffer.alloc(30_000, 0xff);
  return {
    hugeKey,
    undecodable,
    input: [
      request('v0', 'v0', 0),
      request('long', 'L'.repeat(longIdBytes), 1),
      request('v1', 'v1', 2),
      request(hugeKey, 'M'.repeat(longIdBytes), 3),
      request('v2', 'v2', 4),
      { key: `U${hugeKey}`, value: Buffer.from('x') },
      request('v3', 'v3', 5),
      { key: 'cut', value: undecodable },
      request('v4', 'v4', 6),
    ],
  };
}

/** The valid requests of oversizeInputs(), by key, with their rows. */
export const OVERSIZE_VALID: ReadonlyArray<readonly [string, number]> = [['v0', 0], ['v1', 2], ['v2', 4], ['v3', 5], ['v4', 6]];

/** The log lines of `stderr` with this message, parsed. */
export function logLines(stderr: string, message: string): Array<Record<string, unknown>> {
  return stderr.split('\n').filter((l) => l.includes(`"message":"${message}"`)).map((l) => JSON.parse(l));
}

/** The two records of oversizeInputs() that have no output at all, as the error lines must name them. */
export function expectOversizeSkips(stderr: string, inputTopic: string, hugeKey: string): void {
  expect(logLines(stderr, 'record skipped: no output fits')).toEqual([
    expect.objectContaining({ level: 'error', topic: inputTopic, partition: 0, offset: 3, keyBytes: hugeKey.length,
      keyPrefix: 'K'.repeat(64), reason: 'output-too-large' }),
    expect.objectContaining({ level: 'error', topic: inputTopic, partition: 0, offset: 5, keyBytes: hugeKey.length + 1,
      keyPrefix: `U${'K'.repeat(63)}`, valueBytes: 1, reason: 'undecodable' }),
  ]);
}
