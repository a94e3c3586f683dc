import { CODES, type Message } from 'node-rdkafka';
import { classifyProducerError } from '../lib/processor/deliver/producer-errors';
import { deadLetterOutput, recordBytes } from '../lib/processor/score/output';

function message(key: string | null, value: Buffer | null, headers?: Message['headers']): Message {
  return { topic: 'in', partition: 2, offset: 7, key: key === null ? null : Buffer.from(key), value, size: value?.length ?? 0,
    timestamp: 1_700_000_000_000, headers } as Message;
}

describe('dead-letter copies and the size limit', () => {
  it('keeps a copy that fits byte for byte', () => {
    const m = message('k', Buffer.from('abc'), [{ origin: 'x' }]);
    const out = deadLetterOutput(m, 'dlq', 'undecodable', 'bad', 10_000);
    expect(out.value).toBe(m.value);
    expect(out.skipped).toBeUndefined();
    expect(out.headers!.map((h) => Object.keys(h)[0])).toEqual(['origin', 'xgb.source.topic', 'xgb.source.partition',
      'xgb.source.offset', 'xgb.error.reason', 'xgb.error.message']);
  });

  it('cuts the value of a copy that does not fit to exactly what fits, and says so', () => {
    const value = Buffer.alloc(5000, 7);
    const m = message('key', value);
    const out = deadLetterOutput(m, 'dlq', 'undecodable', 'bad', 2000);
    expect(recordBytes(out.key, out.value, out.headers)).toBe(2000);
    expect(out.value!.length).toBeLessThan(2000);
    expect(Buffer.compare(out.value!, value.subarray(0, out.value!.length))).toBe(0);
    expect(out.headers!.slice(-2)).toEqual([{ 'xgb.error.original-size': '5000' }, { 'xgb.error.truncated': 'true' }]);
  });

  it('marks a record skipped when not even an empty value fits', () => {
    const out = deadLetterOutput(message('k'.repeat(3000), Buffer.from('v')), 'dlq', 'undecodable', 'bad', 2000);
    expect(out.skipped).toMatch(/^the dead-letter copy is \d+ bytes, and \d+ even with an empty value, more than the 2000-byte limit$/);
  });
});

describe('producer errors', () => {
  const ERR = CODES.ERRORS;
  it.each([
    [{ code: ERR.ERR_MSG_SIZE_TOO_LARGE, message: 'Broker: Message size too large' }, 'record'],
    [{ code: ERR.ERR_UNKNOWN, message: 'message size too large' }, 'record'],
    [{ code: ERR.ERR_UNKNOWN, message: 'Broker: Broker failed to validate record' }, 'record'],
    [{ code: ERR.ERR_INVALID_RECORD, message: '' }, 'record'],
    [{ code: ERR.ERR_TOPIC_AUTHORIZATION_FAILED, message: 'Broker: Topic authorization failed' }, 'unauthorized'],
    [{ code: ERR.ERR_UNKNOWN, message: 'Broker: Transactional Id authorization failed' }, 'unauthorized'],
    [{ code: ERR.ERR_UNKNOWN, message: 'Local: This instance has been fenced by a newer instance' }, 'fenced'],
    [{ code: ERR.ERR_PRODUCER_FENCED, message: 'Broker: Producer fenced' }, 'fenced'],
    [{ code: ERR.ERR__FENCED, message: 'Local: This instance has been fenced by a newer instance', isFatal: true }, 'fenced'],
    [{ code: ERR.ERR__MSG_TIMED_OUT, message: 'Local: Message timed out' }, 'transient'],
    [{ code: ERR.ERR_UNKNOWN, message: 'Broker: Not leader for partition' }, 'transient'],
    [{ code: ERR.ERR__TRANSPORT, message: 'Local: Broker transport failure', isFatal: true }, 'fatal'],
  ])('classes %j as %s', (err, kind) => {
    expect(classifyProducerError({ isFatal: false, ...err })).toBe(kind);
  });
});
