import {
  CodecError, decodePredictRequest, decodeScoredRecord, encodePredictRequest, encodeScoreFloat, encodeScoredRecord,
  scoredRecordToJson, type ScoredRecord,
} from '../lib/codec';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** What decoding `bytes` threw, so that a test can check both the class and the exact message. */
function decodeError(decode: (bytes: Uint8Array) => unknown, bytes: Uint8Array): Error {
  try {
    decode(bytes);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`decoded ${bytes.length} bytes without an error`);
}

/** A small deterministic generator (Numerical Recipes' LCG): the same "random" buffers on every run. */
function randomBuffers(count: number, size: number, seed: number): Buffer[] {
  let state = seed >>> 0;
  const buffers: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.alloc(size);
    for (let j = 0; j < size; j++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      b[j] = state >>> 24;
    }
    buffers.push(b);
  }
  return buffers;
}

describe('PredictRequest', () => {
  it('encodes a known request to exact hand-computed bytes, features packed', () => {
    // 0a 02 "r1"                     field 1 (recordID), length-delimited, 2 bytes
    // 22 08 0000003f 000000c0        field 4 (featuresVector), packed: 0.5 and -2 as little-endian float32
    expect(encodePredictRequest({ recordID: 'r1', featuresVector: [0.5, -2] }).toString('hex'))
      .toBe('0a02723122080000003f000000c0');
  });

  it('decodes the same bytes back to the request', () => {
    expect(decodePredictRequest(hex('0a02723122080000003f000000c0')))
      .toEqual({ recordID: 'r1', featuresVector: [0.5, -2] });
  });

  it('decodes unpacked features (one fixed32 per value, as older writers send) like packed ones', () => {
    // 25 = field 4 with wire type 5 (32-bit), repeated once per value.
    const unpacked = hex('0a027231 25 0000003f 25 000000c0');
    expect(decodePredictRequest(unpacked)).toEqual(decodePredictRequest(hex('0a02723122080000003f000000c0')));
  });

  it('concatenates packed and unpacked runs of the same field in order', () => {
    expect(decodePredictRequest(hex('22 04 0000803f 25 00000040 22 04 00004040')).featuresVector).toEqual([1, 2, 3]);
  });

  it('ignores unknown fields of every wire type, including the reserved numbers 2 and 3', () => {
    const withUnknowns = hex([
      '10 05', //                       field 2, varint 5
      '0a 02 7231', //                  recordID "r1"
      '1a 03 616263', //                field 3, length-delimited "abc"
      '22 04 0000003f', //              featuresVector [0.5]
      '9d06 01020304', //               field 99, 32-bit
      '9906 0102030405060708', //       field 99, 64-bit
      'a306 0807 a406', //              field 100, a group holding field 1 = 7 (proto2 writers)
      '25 000000c0', //                 featuresVector, unpacked, -2
    ].join(''));
    expect(decodePredictRequest(withUnknowns)).toEqual({ recordID: 'r1', featuresVector: [0.5, -2] });
  });

  it('returns float32 values: 0.1 comes back as Math.fround(0.1)', () => {
    const decoded = decodePredictRequest(encodePredictRequest({ recordID: 'r', featuresVector: [0.1, 1 / 3, 1e-40] }));
    expect(decoded.featuresVector).toEqual([Math.fround(0.1), Math.fround(1 / 3), Math.fround(1e-40)]);
  });

  it('keeps NaN, Infinity, -Infinity and -0 as they are (validating them is the processor\'s job)', () => {
    const decoded = decodePredictRequest(
      encodePredictRequest({ recordID: 'r', featuresVector: [NaN, Infinity, -Infinity, -0] }));
    expect(decoded.featuresVector).toEqual([NaN, Infinity, -Infinity, -0]);
    expect(Object.is(decoded.featuresVector[3], -0)).toBe(true);
  });

  it('round-trips a 30-feature request', () => {
    const request = { recordID: 'txn-000123', featuresVector: Array.from({ length: 30 }, (_, i) => Math.fround(i * 0.37 - 4)) };
    expect(decodePredictRequest(encodePredictRequest(request))).toEqual(request);
  });

  it('decodes an empty value as an empty recordID and no features, with an array the caller may change', () => {
    const decoded = decodePredictRequest(new Uint8Array(0));
    expect(decoded).toEqual({ recordID: '', featuresVector: [] });
    decoded.featuresVector.push(1);
    expect(decodePredictRequest(new Uint8Array(0)).featuresVector).toEqual([]);
  });

  it('leaves out an empty recordID and empty features, as protoc does', () => {
    expect(encodePredictRequest({ recordID: '', featuresVector: [] }).length).toBe(0);
  });

  describe('rejects malformed bytes with a CodecError naming the problem', () => {
    it.each([
      ['a string longer than the value', '0a0a7231', 'index out of range: 2 + 10 > 4'],
      ['a length varint cut short', '0a80', 'index out of range: 2 + 1 > 2'],
      ['a float cut short', '25000000', 'index out of range: 1 + 4 > 4'],
      ['wire type 7, which does not exist', '4f', 'invalid wire type 7 at offset 1'],
      ['an end-group with no start', '0a0172 0c', 'field 1 (recordID) has wire type 4, expected 2, at offset 3'],
      ['field number 0', '0000', 'invalid field number 0 at offset 0'],
      ['a varint where recordID belongs', '0801', 'field 1 (recordID) has wire type 0, expected 2, at offset 0'],
      ['a 64-bit value where a float belongs', '210000000000000000', 'field 4 (featuresVector) has wire type 1, expected 5, at offset 0'],
      ['packed floats whose length is not a multiple of 4', '2203000000',
        'packed field 4 (featuresVector) has 3 bytes, not a multiple of 4, at offset 2'],
      ['a recordID that is not UTF-8', '0a02c328', 'field 1 (recordID) is not valid UTF-8, at offset 2'],
      ['a JSON value written by mistake', Buffer.from('{"recordID":"r1"}').toString('hex'), 'index out of range: 3 + 114 > 17'],
      ['plain text', Buffer.from('hello world').toString('hex'), 'invalid wire type 4 at offset 3'],
    ])('%s', (_what, bytes, message) => {
      const err = decodeError(decodePredictRequest, hex(bytes));
      expect(err).toBeInstanceOf(CodecError);
      expect(err.name).toBe('CodecError');
      expect(err.message).toBe(`undecodable PredictRequest: ${message}`);
    });
  });

  it('throws nothing but CodecError on random bytes, and accepts almost none of them', () => {
    const accepted = (buffers: Buffer[]): number => {
      let n = 0;
      for (const bytes of buffers) {
        let decoded;
        try {
          decoded = decodePredictRequest(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
          expect((err as Error).message).toMatch(/^undecodable PredictRequest: /);
          continue;
        }
        n++;
        expect(decoded.recordID).toBe('');
      }
      return n;
    };
    // The few that pass are mostly runs of well-formed unknown fields; none carries a recordID, so the
    // processor still rejects every one of them. (protobufjs alone accepts about 7% of the 16-byte ones.)
    expect(accepted(randomBuffers(2000, 16, 1))).toBeLessThanOrEqual(40);
    expect(accepted(randomBuffers(1000, 64, 2))).toBeLessThanOrEqual(5);
  });
});

describe('ScoredRecord', () => {
  const record: ScoredRecord = {
    recordID: 'r1',
    score: 0.75,
    suspicious: true,
    modelVersion: 'v1',
    eventTimestampMs: 1_700_000_000_000,
    scoredTimestampMs: 1_700_000_000_250,
    contributions: [{ feature: 'amount', value: 0.25 }, { feature: 'age', value: -1.5 }],
    sourceTopic: 'predict-requests',
    sourcePartition: 3,
    sourceOffset: 123_456_789_012,
  };
  const recordHex = [
    '0a 02 7231', //                  recordID "r1"
    '15 0000403f', //                 score 0.75, little-endian float32
    '18 01', //                       suspicious true
    '22 02 7631', //                  modelVersion "v1"
    '28 80d095ffbc31', //             eventTimestampMs 1700000000000 as a varint
    '30 fad195ffbc31', //             scoredTimestampMs 1700000000250
    '3a 0d 0a06616d6f756e74 150000803e', // contributions[0]: feature "amount", value 0.25
    '3a 0a 0a03616765 150000c0bf', //      contributions[1]: feature "age", value -1.5
    '42 10 707265646963742d7265717565737473', // sourceTopic "predict-requests"
    '48 03', //                       sourcePartition 3
    '50 94b4e4f4cb03', //             sourceOffset 123456789012 as a varint
  ].join('');

  it('encodes a known record to exact hand-computed bytes', () => {
    expect(encodeScoredRecord(record).toString('hex')).toBe(hex(recordHex).toString('hex'));
  });

  it('decodes those bytes back, with the int64 timestamps as plain numbers', () => {
    const decoded = decodeScoredRecord(hex(recordHex));
    expect(decoded).toEqual(record);
    expect(typeof decoded.eventTimestampMs).toBe('number');
    expect(typeof decoded.scoredTimestampMs).toBe('number');
    expect(typeof decoded.sourceOffset).toBe('number');
  });

  it('leaves out fields holding their default value, as protoc does', () => {
    const sparse: ScoredRecord = {
      recordID: 'r1', score: 0, suspicious: false, modelVersion: '', eventTimestampMs: 0, scoredTimestampMs: 0,
      contributions: [], sourceTopic: '', sourcePartition: 0, sourceOffset: 0,
    };
    expect(encodeScoredRecord(sparse).toString('hex')).toBe('0a027231');
    expect(decodeScoredRecord(hex('0a027231'))).toEqual(sparse);
  });

  it('writes a score of -0, whose float bits are not zero, as protoc does', () => {
    expect(encodeScoredRecord({ ...record, contributions: [], score: -0 }).subarray(4, 9).toString('hex')).toBe('1500000080');
  });

  it('stores the score as float32', () => {
    expect(decodeScoredRecord(encodeScoredRecord({ ...record, score: 0.1 })).score).toBe(Math.fround(0.1));
  });

  it('round-trips negative and pre-1970 timestamps', () => {
    const old = { ...record, eventTimestampMs: -1, scoredTimestampMs: -86_400_000 };
    expect(decodeScoredRecord(encodeScoredRecord(old))).toEqual(old);
  });

  it('refuses a timestamp that is not an integer instead of truncating it', () => {
    expect(() => encodeScoredRecord({ ...record, eventTimestampMs: 1.5 }))
      .toThrow(new RangeError('eventTimestampMs must be an integer number of milliseconds, got 1.5'));
    expect(() => encodeScoredRecord({ ...record, scoredTimestampMs: NaN }))
      .toThrow(new RangeError('scoredTimestampMs must be an integer number of milliseconds, got NaN'));
  });

  it('refuses a source offset that is not a safe integer', () => {
    expect(() => encodeScoredRecord({ ...record, sourceOffset: 2 ** 53 }))
      .toThrow(new RangeError('sourceOffset must be a safe integer, got 9007199254740992'));
  });

  it('rejects a contribution whose inner length runs past its own end', () => {
    // The contribution claims 9 bytes; its feature string then claims 10 of them.
    const err = decodeError(decodeScoredRecord, hex('3a09 0a0a 6630 150000803e'));
    expect(err).toBeInstanceOf(CodecError);
    expect(err.message).toBe('undecodable ScoredRecord: index out of range: 4 + 10 > 11');
  });

  it('rejects a varint where a contribution belongs', () => {
    const err = decodeError(decodeScoredRecord, hex('3801'));
    expect(err.message).toBe('undecodable ScoredRecord: field 7 (contributions) has wire type 0, expected 2, at offset 0');
  });
});

describe('json output format', () => {
  it('writes the record as UTF-8 JSON in proto field order, floats at their float32 value', () => {
    const json = scoredRecordToJson({
      recordID: 'r1', score: 0.1, suspicious: false, modelVersion: 'v1',
      eventTimestampMs: 1_700_000_000_000, scoredTimestampMs: 1_700_000_000_250,
      contributions: [{ feature: 'amount', value: 0.2 }],
      sourceTopic: 'in', sourcePartition: 1, sourceOffset: 42,
    });
    expect(json.toString('utf8')).toBe('{"recordID":"r1","score":0.10000000149011612,"suspicious":false,"modelVersion":"v1",'
      + '"eventTimestampMs":1700000000000,"scoredTimestampMs":1700000000250,'
      + '"contributions":[{"feature":"amount","value":0.20000000298023224}],'
      + '"sourceTopic":"in","sourcePartition":1,"sourceOffset":42}');
  });

  it('carries the same numbers as the protobuf format', () => {
    const rec: ScoredRecord = {
      recordID: 'é-1', score: 0.3, suspicious: true, modelVersion: 'm', eventTimestampMs: 5, scoredTimestampMs: 6,
      contributions: [{ feature: 'x', value: 0.7 }], sourceTopic: 't', sourcePartition: 2, sourceOffset: 9,
    };
    expect(JSON.parse(scoredRecordToJson(rec).toString('utf8'))).toEqual(decodeScoredRecord(encodeScoredRecord(rec)));
  });

  it('writes only the record\'s own fields, whatever else the object carries', () => {
    const rec = {
      recordID: 'r', score: 0.5, suspicious: true, modelVersion: 'm', eventTimestampMs: 1, scoredTimestampMs: 2,
      contributions: [], sourceTopic: 't', sourcePartition: 0, sourceOffset: 0, extra: 'not for the wire',
    };
    expect(Object.keys(JSON.parse(scoredRecordToJson(rec).toString('utf8')))).toEqual([
      'recordID', 'score', 'suspicious', 'modelVersion', 'eventTimestampMs', 'scoredTimestampMs', 'contributions',
      'sourceTopic', 'sourcePartition', 'sourceOffset']);
  });
});

describe('float output format', () => {
  it.each([
    [0.5, '3f000000'],
    [1, '3f800000'],
    [0, '00000000'],
    [0.1, '3dcccccd'],
    [0.999, '3f7fbe77'],
    [NaN, '7fc00000'],
  ])('writes %p as the 4 big-endian bytes %s', (score, bytes) => {
    expect(encodeScoreFloat(score).toString('hex')).toBe(bytes);
  });
});
