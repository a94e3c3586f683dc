/**
 * The wire format: PredictRequest values in, ScoredRecord values out (protobuf, JSON or a bare float).
 * Pure functions over bytes, built on protobufjs and proto/predict.proto, which is loaded once when this
 * module is. Checking what a request says (feature count, finiteness, an empty recordID) is the
 * processor's business; this module only says whether the bytes are a well-formed message.
 */
import { isUtf8 } from 'node:buffer';
import * as path from 'node:path';
import { Enum, Reader, Root, Type, types, type Field } from 'protobufjs';

/** A transaction to score, as producers write it to the input topic. */
export interface PredictRequest {
  recordID: string;
  /** float32 values; NaN (xgboost's "missing") and ±Infinity come through decoding unchanged. */
  featuresVector: number[];
}

/** One feature's share of a score, in the model's margin units. */
export interface Contribution {
  feature: string;
  value: number;
}

/** The processor's verdict on one request. Timestamps are milliseconds since the Unix epoch. */
export interface ScoredRecord {
  recordID: string;
  score: number;
  suspicious: boolean;
  modelVersion: string;
  eventTimestampMs: number;
  scoredTimestampMs: number;
  contributions: Contribution[];
  /** Where the input record was read (topic, partition, offset): a unique id per input. */
  sourceTopic: string;
  sourcePartition: number;
  sourceOffset: number;
}

/** Bytes that are not a well-formed message of the expected type. */
export class CodecError extends Error {
  override readonly name = 'CodecError';
}

// lib/codec.ts runs under ts-jest and compiles to dist/codec.js: both folders sit at the package root,
// beside proto/ (which package.json ships).
/** proto/predict.proto, the wire format. */
export const PROTO_PATH = path.resolve(__dirname, '..', 'proto', 'predict.proto');

const root = new Root();
// keepCase: the field names are already the camelCase the original design used (recordID, not recordId).
root.loadSync(PROTO_PATH, { keepCase: true });
root.resolveAll();
const PredictRequestType = root.lookupType('xgbstream.v1.PredictRequest');
const ScoredRecordType = root.lookupType('xgbstream.v1.ScoredRecord');

/** The wire type of one value of `field` when it is not packed. */
function wireTypeOf(field: Field): number {
  if (field.resolvedType instanceof Type) return 2;
  if (field.resolvedType instanceof Enum) return 0;
  return types.basic[field.type as keyof typeof types.basic];
}

/** Byte size of one element of a packed fixed-width field; 0 for varints. */
function packedElementSize(wireType: number): number {
  return wireType === 5 ? 4 : wireType === 1 ? 8 : 0;
}

/**
 * Walks a message's fields between the reader's position and `end`, throwing on anything a strict
 * proto3 parser (protoc's Java or C++) rejects. protobufjs's decoder trusts the wire type of a field it
 * knows, so without this walk a varint where a string belongs, or a packed float array whose length is
 * not a multiple of 4, decodes into garbage instead of failing; it also does not check UTF-8.
 */
function checkMessage(type: Type, reader: Reader, end: number): void {
  const outerLen = reader.len;
  // Bounds every read of this message to its own bytes, so a nested length that runs past its parent
  // fails here instead of reading the parent's next field.
  reader.len = end;
  while (reader.pos < end) {
    const at = reader.pos;
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    if (id === 0) throw new Error(`invalid field number 0 at offset ${at}`);
    const field = type.fieldsById[id];
    if (field === undefined) {
      // Unknown field: skipped, as proto3 requires; skipType throws on wire types 4, 6 and 7.
      reader.skipType(wireType);
      continue;
    }
    const expected = wireTypeOf(field);
    if (wireType === expected && expected !== 2) {
      reader.skipType(wireType);
    } else if (wireType === 2) {
      const isPacked = expected !== 2;
      const packable = field.resolvedType instanceof Enum || field.type in types.packed;
      if (isPacked && !(field.repeated && packable)) {
        throw new Error(`field ${id} (${field.name}) has wire type 2, expected ${expected}, at offset ${at}`);
      }
      const length = reader.uint32();
      const start = reader.pos;
      reader.skip(length);
      const size = isPacked ? packedElementSize(expected) : 0;
      if (size > 0 && length % size !== 0) {
        throw new Error(`packed field ${id} (${field.name}) has ${length} bytes, not a multiple of ${size}, at offset ${start}`);
      }
      if (field.type === 'string' && !isUtf8(reader.buf.subarray(start, start + length))) {
        throw new Error(`field ${id} (${field.name}) is not valid UTF-8, at offset ${start}`);
      }
      if (field.resolvedType instanceof Type) {
        reader.pos = start;
        checkMessage(field.resolvedType, reader, start + length);
      }
    } else {
      throw new Error(`field ${id} (${field.name}) has wire type ${wireType}, expected ${expected}, at offset ${at}`);
    }
  }
  reader.len = outerLen;
}

/** Decodes `bytes` as `type` after the strict walk, turning every failure into a CodecError. */
function decodeStrict(type: Type, bytes: Uint8Array): ReturnType<Type['decode']> {
  try {
    const reader = Reader.create(bytes);
    checkMessage(type, reader, reader.len);
    return type.decode(bytes);
  } catch (err) {
    throw new CodecError(`undecodable ${type.name}: ${(err as Error).message}`, { cause: err });
  }
}

/** protobufjs returns a Buffer under Node already; this only satisfies the type and covers other writers. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkedMillis(name: string, value: number): number {
  // protobufjs would silently write a fraction as its integer part and NaN as 0.
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be an integer number of milliseconds, got ${value}`);
  return value;
}

function checkedInt64(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be a safe integer, got ${value}`);
  return value;
}

/**
 * Decodes a PredictRequest. Packed and unpacked featuresVector encodings are both accepted and unknown
 * fields are skipped. Throws a CodecError when the bytes are not a well-formed PredictRequest.
 */
export function decodePredictRequest(bytes: Uint8Array): PredictRequest {
  const message = decodeStrict(PredictRequestType, bytes) as unknown as PredictRequest;
  // An absent repeated field is protobufjs's shared, frozen empty array: hand out a fresh one.
  const features = message.featuresVector;
  return { recordID: message.recordID, featuresVector: features.length > 0 ? features : [] };
}

/**
 * Encodes a PredictRequest the way protoc's proto3 writers do: features packed, fields holding their
 * default value left out. Used by the replay tool and the tests as a producer would.
 */
export function encodePredictRequest(req: PredictRequest): Buffer {
  const message: Record<string, unknown> = {};
  if (req.recordID !== '') message.recordID = req.recordID;
  if (req.featuresVector.length > 0) message.featuresVector = req.featuresVector;
  return asBuffer(PredictRequestType.encode(message).finish());
}

/**
 * Encodes a ScoredRecord (the `protobuf` output format). Like protoc's proto3 writers, fields holding
 * their default value are left out, so the bytes match what a Java or C++ service would write.
 * Throws a RangeError when a timestamp is not a safe integer.
 */
export function encodeScoredRecord(rec: ScoredRecord): Buffer {
  const message: Record<string, unknown> = {};
  if (rec.recordID !== '') message.recordID = rec.recordID;
  // Object.is: protoc writes -0, whose bits are not all zero, and leaves out only +0.
  if (!Object.is(rec.score, 0)) message.score = rec.score;
  if (rec.suspicious) message.suspicious = true;
  if (rec.modelVersion !== '') message.modelVersion = rec.modelVersion;
  if (checkedMillis('eventTimestampMs', rec.eventTimestampMs) !== 0) message.eventTimestampMs = rec.eventTimestampMs;
  if (checkedMillis('scoredTimestampMs', rec.scoredTimestampMs) !== 0) message.scoredTimestampMs = rec.scoredTimestampMs;
  if (rec.contributions.length > 0) {
    message.contributions = rec.contributions.map((c) => {
      const contribution: Record<string, unknown> = {};
      if (c.feature !== '') contribution.feature = c.feature;
      if (!Object.is(c.value, 0)) contribution.value = c.value;
      return contribution;
    });
  }
  if (rec.sourceTopic !== '') message.sourceTopic = rec.sourceTopic;
  if (rec.sourcePartition !== 0) message.sourcePartition = rec.sourcePartition;
  if (checkedInt64('sourceOffset', rec.sourceOffset) !== 0) message.sourceOffset = rec.sourceOffset;
  return asBuffer(ScoredRecordType.encode(message).finish());
}

/** Decodes a ScoredRecord; int64 timestamps come back as numbers. Throws a CodecError on malformed bytes. */
export function decodeScoredRecord(bytes: Uint8Array): ScoredRecord {
  const message = decodeStrict(ScoredRecordType, bytes);
  // longs: Number, because protobufjs otherwise returns int64 as Long objects; epoch milliseconds fit
  // a double exactly.
  const o = ScoredRecordType.toObject(message, { longs: Number, defaults: true, arrays: true });
  return {
    recordID: o.recordID,
    score: o.score,
    suspicious: o.suspicious,
    modelVersion: o.modelVersion,
    eventTimestampMs: o.eventTimestampMs,
    scoredTimestampMs: o.scoredTimestampMs,
    contributions: (o.contributions as Contribution[]).map((c) => ({ feature: c.feature, value: c.value })),
    sourceTopic: o.sourceTopic,
    sourcePartition: o.sourcePartition,
    sourceOffset: o.sourceOffset,
  };
}

/**
 * The `json` output format: UTF-8 JSON with the ScoredRecord's field names, in proto order. Floats are
 * written as their float32 value, so JSON and protobuf consumers see the same numbers; timestamps are
 * plain JSON numbers (not proto3 JSON's strings). JSON has no NaN or Infinity: such a value becomes null.
 */
export function scoredRecordToJson(rec: ScoredRecord): Buffer {
  return Buffer.from(JSON.stringify({
    recordID: rec.recordID,
    score: Math.fround(rec.score),
    suspicious: rec.suspicious,
    modelVersion: rec.modelVersion,
    eventTimestampMs: rec.eventTimestampMs,
    scoredTimestampMs: rec.scoredTimestampMs,
    contributions: rec.contributions.map((c) => ({ feature: c.feature, value: Math.fround(c.value) })),
    sourceTopic: rec.sourceTopic,
    sourcePartition: rec.sourcePartition,
    sourceOffset: rec.sourceOffset,
  }), 'utf8');
}

/**
 * The `float` output format: the score as a 4-byte big-endian IEEE-754 float32 (the layout of Kafka's
 * FloatSerializer), what the original Kafka Streams application wrote, so its consumers keep working.
 */
export function encodeScoreFloat(score: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeFloatBE(score, 0);
  return out;
}
