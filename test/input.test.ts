/**
 * The input side of the wire format: Schema Registry framing against hand-computed bytes, JSON requests
 * by name and by vector with every dead-letter reason, and the registry check against an HTTP registry.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { encodePredictRequest } from '../lib/codec';
import { FramingError, frameValue, parseFrame } from '../lib/input/framing';
import { InputRulesError, RequestDecoder, type InputRules } from '../lib/input/request-decoder';
import { SchemaRegistry } from '../lib/input/schema-registry';
import { validateRequest } from '../lib/processor/score/validate';
import { SchemaRegistryStub } from './helpers/schema-registry-stub';

const PREDICT_PROTO = readFileSync(path.join(__dirname, '..', 'proto', 'predict.proto'), 'utf8');
const NAMES = ['amount', 'hour', 'risk'];
const RULES: InputRules = { format: 'json', framing: 'none', numFeatures: 3, featureNames: NAMES, allowMissingFeatures: false };
const CHECKS = { numFeatures: 3, rejectMissing: false, maxRecordIdBytes: 4096 };

/** What a value becomes under `rules`: the features of a valid record, or `reason: message`. */
function outcome(value: string | Buffer, rules: Partial<InputRules> = {}, registry?: SchemaRegistry): number[] | string {
  const decoder = new RequestDecoder({ ...RULES, ...rules }, registry);
  const r = validateRequest(typeof value === 'string' ? Buffer.from(value) : value, CHECKS, (v) => decoder.decode(v));
  return r.ok ? [...r.features] : `${r.reason}: ${r.message}`;
}

describe('Schema Registry framing', () => {
  const payload = Buffer.from([0x0a, 0x01, 0x41]);

  it('writes the message indexes [0] as the single byte 0', () => {
    expect(frameValue(1, payload, [0]).toString('hex')).toBe('00' + '00000001' + '00' + '0a0141');
  });

  it('writes [1] as count 1 and index 1, both zigzag', () => {
    expect(frameValue(258, payload, [1]).toString('hex')).toBe('00' + '00000102' + '02' + '02' + '0a0141');
  });

  it('writes [0, 2] as count 2, then 0 and 2, zigzag', () => {
    expect(frameValue(0x7fffffff, payload, [0, 2]).toString('hex')).toBe('00' + '7fffffff' + '04' + '00' + '04' + '0a0141');
  });

  it('writes an index of 64 as a two-byte varint (zigzag 128)', () => {
    expect(frameValue(7, payload, [64]).toString('hex')).toBe('00' + '00000007' + '02' + '8001' + '0a0141');
  });

  it('writes no indexes for the JSON Schema layout', () => {
    expect(frameValue(5, Buffer.from('{}')).toString('hex')).toBe('00' + '00000005' + '7b7d');
  });

  it('reads back what it writes, and hand-made bytes', () => {
    for (const indexes of [[0], [1], [0, 2], [3, 1, 4], [64]]) {
      const f = parseFrame(frameValue(42, payload, indexes), true);
      expect({ id: f.schemaId, indexes: f.messageIndexes, payload: f.payload.toString('hex') })
        .toEqual({ id: 42, indexes, payload: '0a0141' });
    }
    // Count 1 written explicitly with index 0: the long form of [0].
    const long = parseFrame(Buffer.from('00000000090200' + '0a0141', 'hex'), true);
    expect([long.schemaId, long.messageIndexes]).toEqual([9, [0]]);
    const json = parseFrame(Buffer.from('00000000097b7d', 'hex'), false);
    expect([json.schemaId, json.payload.toString()]).toEqual([9, '{}']);
  });

  it('refuses short headers, negative counts and indexes, and varints running off the end', () => {
    const bad = (hex: string): string => {
      try {
        parseFrame(Buffer.from(hex, 'hex'), true);
        return 'parsed';
      } catch (err) {
        expect(err).toBeInstanceOf(FramingError);
        return (err as Error).message;
      }
    };
    expect(bad('00000001')).toBe('framed value is 4 bytes, shorter than the 5-byte header');
    expect(bad('0000000001')).toBe('message index varint at offset 5 runs past the end of the value');
    expect(bad('000000000101')).toBe('message index count -1 is not from 0 to 64');
    expect(bad('00000000010201')).toBe('message index -1 is negative');
    expect(bad('000000000102ff')).toBe('message index varint at offset 6 runs past the end of the value');
  });
});

describe('JSON requests', () => {
  it('maps features by the model\'s names, whatever their order in the request', () => {
    expect(outcome('{"recordID":"r1","features":{"risk":0.5,"amount":12.25,"hour":3}}')).toEqual([12.25, 3, 0.5]);
  });

  it('takes featuresVector in column order, null as missing', () => {
    expect(outcome('{"recordID":"r1","featuresVector":[1,null,-2.5e3]}')).toEqual([1, NaN, -2500]);
  });

  it('ignores fields it does not know, as protobuf readers do', () => {
    expect(outcome('{"recordID":"r1","source":"web","featuresVector":[1,2,3]}')).toEqual([1, 2, 3]);
  });

  it('dead-letters a missing feature, naming it, unless --allow-missing-features', () => {
    expect(outcome('{"recordID":"r1","features":{"amount":1,"risk":2}}'))
      .toBe("missing-feature: feature 'hour' missing (--allow-missing-features scores them as missing)");
    expect(outcome('{"recordID":"r1","features":{"amount":1,"hour":null}}'))
      .toBe("missing-feature: features 'hour', 'risk' missing (--allow-missing-features scores them as missing)");
    expect(outcome('{"recordID":"r1","features":{"amount":1,"hour":null}}', { allowMissingFeatures: true })).toEqual([1, NaN, NaN]);
  });

  it('takes a key named __proto__ as a name like any other', () => {
    expect(outcome('{"recordID":"r1","features":{"__proto__":{"amount":1},"amount":1,"hour":2,"risk":3}}'))
      .toBe("unknown-feature: feature '__proto__' is not one of the model's 3");
    expect(({} as Record<string, unknown>).amount).toBeUndefined();
  });

  it('gives each other fault its own reason and a message naming the field', () => {
    expect(outcome('{"recordID":"r1","features":{"amount":1,"hour":2,"risk":3,"color":4}}'))
      .toBe("unknown-feature: feature 'color' is not one of the model's 3");
    expect(outcome('{"recordID":"r1","features":{"amount":"12.5","hour":2,"risk":3}}'))
      .toBe("non-numeric-feature: feature 'amount' is \"12.5\", not a number");
    expect(outcome('{"recordID":"r1","featuresVector":[1,true,3]}'))
      .toBe('non-numeric-feature: featuresVector[1] is true, not a number');
    expect(outcome('{"recordID":"r1","features":{"amount":1,"hour":2,"amount":3,"risk":4}}'))
      .toBe("duplicate-key: key 'amount' appears twice in the request.features");
    expect(outcome('{"recordID":"r1","recordID":"r2","featuresVector":[1,2,3]}'))
      .toBe("duplicate-key: key 'recordID' appears twice in the request");
    expect(outcome('{"recordID":"r1","features":{"amount":3.5e38,"hour":2,"risk":3}}'))
      .toBe("feature-out-of-range: feature 'amount' is 3.5e+38, outside the float32 range (±3.4028235e38)");
    expect(outcome('{"recordID":"r1","featuresVector":[1,-1e400,3]}'))
      .toBe('feature-out-of-range: featuresVector[1] is -Infinity, outside the float32 range (±3.4028235e38)');
  });

  it('accepts the largest float32 and numbers too small for float32, which the row rounds to 0', () => {
    expect(outcome('{"recordID":"r1","featuresVector":[3.4028234663852886e38,-1e-50,0.1]}'))
      .toEqual([3.4028234663852886e38, -1e-50, 0.1]);
  });

  it('dead-letters what is not a JSON request as undecodable, saying why', () => {
    expect(outcome('{"recordID":"r1","featuresVector":[1,NaN,3]}'))
      .toBe("undecodable: not JSON: unexpected \"N\" at offset 37, expected a value (JSON has no NaN or Infinity: write null for a missing value)");
    expect(outcome('{"recordID":"r1","featuresVector":[1,2,3],}')).toBe('undecodable: not JSON: unexpected "}" at offset 42, expected a key');
    expect(outcome('[1,2,3]')).toBe('undecodable: the JSON request is an array, not an object');
    expect(outcome('{"recordID":7,"featuresVector":[1,2,3]}')).toBe('undecodable: recordID is 7, not a string');
    expect(outcome('{"recordID":"r1"}')).toBe('undecodable: the JSON request has neither features nor featuresVector');
    expect(outcome('{"recordID":"r1","features":{},"featuresVector":[]}')).toBe('undecodable: the JSON request has both features and featuresVector');
    expect(outcome(Buffer.from([0x7b, 0xff, 0x7d]))).toBe('undecodable: the JSON request is not valid UTF-8');
  });

  it('leaves the common checks to the validator: empty recordID, feature count', () => {
    expect(outcome('{"featuresVector":[1,2,3]}')).toBe('empty-record-id: recordID is empty');
    expect(outcome('{"recordID":"r1","featuresVector":[1,2]}')).toBe('wrong-feature-count: expected 3 features, got 2');
  });

  it('refuses a model without feature names', () => {
    expect(() => new RequestDecoder({ ...RULES, featureNames: undefined })).toThrow(InputRulesError);
    expect(() => new RequestDecoder({ ...RULES, featureNames: undefined })).toThrow(
      '--input-format json needs a model with feature names');
  });

  it('reads framed JSON (the JSON Schema serializer\'s layout) and bare JSON with --input-framing confluent', () => {
    const json = Buffer.from('{"recordID":"r1","featuresVector":[1,2,3]}');
    expect(outcome(frameValue(3, json), { framing: 'confluent' })).toEqual([1, 2, 3]);
    expect(outcome(json, { framing: 'confluent' })).toEqual([1, 2, 3]);
  });
});

describe('framed protobuf without a registry', () => {
  const request = encodePredictRequest({ recordID: 'r1', featuresVector: [1, 2, 3] });
  const rules = { format: 'protobuf', framing: 'confluent' } as const;

  it('reads framed values of any schema id and message indexes, and bare ones', () => {
    for (const indexes of [[0], [1], [0, 2]]) expect(outcome(frameValue(99, request, indexes), rules)).toEqual([1, 2, 3]);
    expect(outcome(request, rules)).toEqual([1, 2, 3]);
  });

  it('dead-letters bad framing as undecodable', () => {
    expect(outcome(Buffer.from('000000000101', 'hex'), rules))
      .toBe('undecodable: bad Schema Registry framing: message index count -1 is not from 0 to 64');
  });

  it('without --input-framing, says that a leading 0 looks like framing', () => {
    expect(outcome(frameValue(99, request, [0]), { format: 'protobuf' }))
      .toBe('undecodable: undecodable PredictRequest: invalid field number 0 at offset 0 '
        + '(a leading 0 byte is Schema Registry framing: pass --input-framing confluent)');
  });
});

describe('the Schema Registry check', () => {
  const OTHER = 'syntax = "proto3";\npackage shop.v2;\n'
    + 'message Envelope { string id = 1; int64 at = 2;\n'
    + '  message Meta { string k = 1; }\n  message Old { string recordID = 1; repeated double featuresVector = 4; }\n'
    + '  message Request { string recordID = 1; repeated float featuresVector = 4; string channel = 9; } }\n'
    + 'message Scores { string recordID = 1; repeated float featuresVector = 4; }\n';
  let stub: SchemaRegistryStub;
  beforeEach(async () => {
    stub = await SchemaRegistryStub.start({
      1: { schema: PREDICT_PROTO, schemaType: 'PROTOBUF' },
      2: { schema: OTHER, schemaType: 'PROTOBUF' },
      3: { schema: '{"type":"record","name":"R","fields":[]}', schemaType: 'AVRO' },
      4: { schema: 'message Broken {', schemaType: 'PROTOBUF' },
    }, 'svc:s3cret');
  });
  afterEach(() => stub.stop());

  const request = encodePredictRequest({ recordID: 'r1', featuresVector: [1, 2, 3] });
  const framed = (id: number, indexes: number[]): Buffer => frameValue(id, request, indexes);

  async function decide(values: Buffer[], registry: SchemaRegistry): Promise<Array<number[] | string>> {
    const decoder = new RequestDecoder({ ...RULES, format: 'protobuf', framing: 'confluent' }, registry);
    await decoder.prepare(values);
    return values.map((v) => outcome(v, { format: 'protobuf', framing: 'confluent' }, registry));
  }

  it('accepts messages whose fields 1 and 4 are a string and repeated floats, at the record\'s indexes', async () => {
    const registry = new SchemaRegistry({ url: `${stub.url}/`, basicAuth: 'svc:s3cret' });
    const results = await decide([framed(1, [0]), framed(2, [1]), framed(2, [0, 2]), framed(1, [0])], registry);
    expect(results).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]]);
  });

  it('dead-letters every other schema as incompatible-schema, with the id and why', async () => {
    const registry = new SchemaRegistry({ url: stub.url, basicAuth: 'svc:s3cret' });
    expect(await decide([framed(2, [0]), framed(2, [0, 1]), framed(2, [0, 0]), framed(2, [5]), framed(1, [1]),
      framed(3, [0]), framed(4, [0]), framed(77, [0])], registry)).toEqual([
      'incompatible-schema: schema id 2 message shop.v2.Envelope: field 4 is absent, a PredictRequest needs repeated float featuresVector',
      'incompatible-schema: schema id 2 message shop.v2.Envelope.Old: field 4 is repeated double featuresVector, a PredictRequest needs repeated float featuresVector',
      'incompatible-schema: schema id 2 message shop.v2.Envelope.Meta: field 4 is absent, a PredictRequest needs repeated float featuresVector',
      'incompatible-schema: schema id 2 has no message at indexes [5]',
      'incompatible-schema: schema id 1 message xgbstream.v1.ScoredRecord: field 4 is string modelVersion, a PredictRequest needs repeated float featuresVector',
      'incompatible-schema: schema id 3: the schema is AVRO, not PROTOBUF',
      expect.stringMatching(/^incompatible-schema: schema id 4: the schema does not parse: /),
      'incompatible-schema: schema id 77: not found in the registry',
    ]);
  });

  it('looks each id up once, with basic auth from the URL, and waits out a registry that fails', async () => {
    stub.failNext = 2;
    const retries: string[] = [];
    const registry = new SchemaRegistry({
      url: stub.url.replace('http://', 'http://svc:s3cret@'), maxBackoffMs: 20,
      onRetry: (id, attempt, err) => retries.push(`${id}#${attempt}: ${err.message}`),
    });
    // Id 1 alone first, so that both failures are its own.
    expect(await decide([framed(1, [0]), framed(1, [0])], registry)).toEqual([[1, 2, 3], [1, 2, 3]]);
    await decide([framed(1, [0]), framed(2, [1]), framed(1, [0])], registry);
    await decide([framed(1, [0]), framed(2, [1])], registry);
    const gets = stub.requests.filter((r) => r.method === 'GET').map((r) => r.path).sort();
    expect(gets).toEqual(['/schemas/ids/1', '/schemas/ids/1', '/schemas/ids/1', '/schemas/ids/2'].sort());
    expect(retries).toEqual([
      `1#1: GET ${stub.url}/schemas/ids/1: HTTP 503 {"error_code":50003,"message":"restarting"}`,
      `1#2: GET ${stub.url}/schemas/ids/1: HTTP 503 {"error_code":50003,"message":"restarting"}`,
    ]);
    expect(new Set(stub.requests.map((r) => r.authorization))).toEqual(new Set([`Basic ${Buffer.from('svc:s3cret').toString('base64')}`]));
  });
});
