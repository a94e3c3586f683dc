/**
 * Confluent Schema Registry framing of a record value: the wire layout that the registry's serializers
 * put before the payload. Pure functions over bytes.
 *
 *     byte 0      magic byte, always 0
 *     bytes 1-4   schema id, a big-endian int32
 *     protobuf:   the message indexes, a zigzag varint count then that many zigzag varint indexes;
 *                 the common [0] (the schema's first message) is written as the single byte 0
 *     then        the payload (a protobuf message, or JSON with the JSON Schema serializer)
 *
 * A bare PredictRequest can never start with 0 (field number 0 does not exist) and JSON never does
 * either, so the magic byte alone tells framed values from bare ones.
 */

/** The first byte of every framed value. */
export const MAGIC_BYTE = 0;

/** A value that starts like framing but is not well-formed framing. */
export class FramingError extends Error {
  override readonly name = 'FramingError';
}

/** A framed value taken apart. */
export interface Frame {
  readonly schemaId: number;
  /** Which message of the schema, by position: [0] the first top-level one, [0, 2] the third nested in it. */
  readonly messageIndexes: readonly number[];
  /** The bytes after the framing, a view into the value. */
  readonly payload: Buffer;
}

/** The bound on the index count: a registry schema has nothing nested this deep, and garbage often claims more. */
const MAX_INDEXES = 64;

/** Whether `value` starts with the magic byte, and so is meant to be framed. */
export function isFramed(value: Uint8Array): boolean {
  return value.length > 0 && value[0] === MAGIC_BYTE;
}

/** Reads one zigzag varint (at most 32 bits, as Java's ByteUtils.readVarint) from `at`; returns value and next offset. */
function readZigzag(bytes: Uint8Array, at: number): [number, number] {
  let raw = 0;
  let shift = 0;
  for (let i = at; i < bytes.length; i++) {
    const b = bytes[i];
    if (shift === 28 && (b & 0xf0) !== 0) throw new FramingError(`message index varint at offset ${at} is longer than 32 bits`);
    raw |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [(raw >>> 1) ^ -(raw & 1), i + 1];
    shift += 7;
  }
  throw new FramingError(`message index varint at offset ${at} runs past the end of the value`);
}

function writeZigzag(n: number, out: number[]): void {
  let raw = ((n << 1) ^ (n >> 31)) >>> 0;
  while (raw > 0x7f) {
    out.push((raw & 0x7f) | 0x80);
    raw >>>= 7;
  }
  out.push(raw);
}

/**
 * Takes apart a framed value. `withIndexes`: the protobuf serializer's layout (message indexes after
 * the id); without, the JSON Schema and Avro one. Throws a FramingError naming what is wrong.
 */
export function parseFrame(value: Buffer, withIndexes: boolean): Frame {
  if (value.length < 5) throw new FramingError(`framed value is ${value.length} bytes, shorter than the 5-byte header`);
  if (value[0] !== MAGIC_BYTE) throw new FramingError(`framed value starts with byte ${value[0]}, not the magic byte 0`);
  const schemaId = value.readInt32BE(1);
  if (!withIndexes) return { schemaId, messageIndexes: [0], payload: value.subarray(5) };
  let [count, at] = readZigzag(value, 5);
  if (count < 0 || count > MAX_INDEXES) throw new FramingError(`message index count ${count} is not from 0 to ${MAX_INDEXES}`);
  // A count of 0 is the serializer's shorthand for [0].
  if (count === 0) return { schemaId, messageIndexes: [0], payload: value.subarray(at) };
  const messageIndexes: number[] = [];
  for (let i = 0; i < count; i++) {
    let index;
    [index, at] = readZigzag(value, at);
    if (index < 0) throw new FramingError(`message index ${index} is negative`);
    messageIndexes.push(index);
  }
  return { schemaId, messageIndexes, payload: value.subarray(at) };
}

/**
 * Frames `payload` as the registry's serializers do. `messageIndexes` undefined: the JSON Schema and
 * Avro layout, without indexes. [0] is written as the single byte 0, like the protobuf serializer.
 */
export function frameValue(schemaId: number, payload: Uint8Array, messageIndexes?: readonly number[]): Buffer {
  if (!Number.isInteger(schemaId) || schemaId < 0 || schemaId > 0x7fffffff) {
    throw new RangeError(`schema id must be an integer from 0 to 2147483647, got ${schemaId}`);
  }
  const indexBytes: number[] = [];
  if (messageIndexes !== undefined) {
    if (messageIndexes.length === 1 && messageIndexes[0] === 0) {
      indexBytes.push(0);
    } else {
      writeZigzag(messageIndexes.length, indexBytes);
      for (const i of messageIndexes) {
        if (!Number.isInteger(i) || i < 0 || i > 0x3fffffff) throw new RangeError(`message index must be a small non-negative integer, got ${i}`);
        writeZigzag(i, indexBytes);
      }
    }
  }
  const out = Buffer.alloc(5 + indexBytes.length + payload.length);
  out[0] = MAGIC_BYTE;
  out.writeInt32BE(schemaId, 1);
  out.set(indexBytes, 5);
  out.set(payload, 5 + indexBytes.length);
  return out;
}
