import { CODES } from 'node-rdkafka';
import { createLogger } from '../lib/log';
import { ProcessorMetrics } from '../lib/metrics';
import { BrokerHealth } from '../lib/processor/broker-health';

function stats(state: string): string {
  return JSON.stringify({ brokers: {
    '127.0.0.1:9092/bootstrap': { name: '127.0.0.1:9092/bootstrap', nodeid: -1, state: 'INIT' },
    'localhost:9092/1': { name: 'localhost:9092/1', nodeid: 1, state },
  } });
}

function setUp() {
  const lines: Array<Record<string, unknown>> = [];
  const metrics = new ProcessorMetrics();
  const health = new BrokerHealth('127.0.0.1:9092', createLogger('info', (l) => { lines.push(JSON.parse(l)); }), metrics);
  return { lines, metrics, health };
}

const T0 = Date.UTC(2026, 10, 27, 10, 0, 0);
const REFUSED = { code: CODES.ERRORS.ERR__TRANSPORT, message: 'localhost:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused' };

describe('broker health', () => {
  it('logs one warn line when the brokers go, naming them, since when and why, and drops the gauge', () => {
    const { lines, metrics, health } = setUp();
    health.onStats(stats('UP'), 'consumer', T0);
    expect(metrics.brokersUp.get()).toBe(1);
    health.onError(REFUSED, T0 + 100);
    health.onStats(stats('TRY_CONNECT'), 'consumer', T0 + 1000);
    health.onStats(stats('CONNECT'), 'consumer', T0 + 2000);
    expect(lines).toEqual([{ time: expect.any(String), level: 'warn', message: 'brokers unreachable',
      brokers: '127.0.0.1:9092', since: '2026-11-27T10:00:01.000Z', reason: REFUSED.message }]);
    expect(metrics.brokersUp.get()).toBe(0);
    expect(health.outage).toBe(`brokers 127.0.0.1:9092 unreachable since 2026-11-27T10:00:01.000Z: ${REFUSED.message}`);
  });

  it('starts an outage on librdkafka\'s "all brokers down", dated from it, once 3 s show no broker up', () => {
    const { lines, health } = setUp();
    health.onStats(stats('UP'), 'consumer', T0 - 500);
    health.onError({ code: CODES.ERRORS.ERR__ALL_BROKERS_DOWN, message: '1/1 brokers are down' }, T0);
    health.onError(REFUSED, T0 + 2999);
    expect(health.outage).toBeUndefined();
    health.onError(REFUSED, T0 + 3000);
    expect(lines.map((l) => [l.message, l.since])).toEqual([['brokers unreachable', '2026-11-27T10:00:00.000Z']]);
    expect(health.outage).toContain(REFUSED.message);
  });

  it('takes "all brokers down" for no outage when a client\'s statistics written after it show a broker up', () => {
    const { lines, health } = setUp();
    health.onStats(stats('UP'), 'producer', T0);
    health.onStats(stats('UP'), 'consumer', T0);
    // One client lost its connections for a second (a consumer rejoining its group); the other kept its own.
    health.onError({ code: CODES.ERRORS.ERR__ALL_BROKERS_DOWN, message: '1/1 brokers are down' }, T0 + 100);
    health.onStats(stats('UP'), 'producer', T0 + 1000);
    health.onStats(stats('TRY_CONNECT'), 'consumer', T0 + 1000);
    health.onStats(stats('UP'), 'consumer', T0 + 2000);
    health.onError(REFUSED, T0 + 5000);
    expect(lines).toEqual([]);
    expect(health.outage).toBeUndefined();
  });

  it('ends an outage only on statistics written after it began', () => {
    const { lines, health } = setUp();
    health.onStats(stats('UP'), 'producer', T0);
    health.onStats(stats('UP'), 'consumer', T0);
    health.onError({ code: CODES.ERRORS.ERR__ALL_BROKERS_DOWN, message: '2/2 brokers are down' }, T0 + 500);
    for (const t of [1000, 2000, 3000]) health.onStats(stats('TRY_CONNECT'), 'producer', T0 + t);
    expect(health.outage).toBeUndefined();
    health.onStats(stats('TRY_CONNECT'), 'producer', T0 + 3500);
    expect(health.outage).toContain('2/2 brokers are down');
    // Statistics that arrive late, written before the outage began (the native path knows when), do not end it.
    health.onStats(stats('UP'), 'consumer', T0 + 4000, T0);
    expect(health.outage).toContain('2/2 brokers are down');
    health.onStats(stats('UP'), 'consumer', T0 + 9000, T0 + 8000);
    expect(lines.map((l) => [l.message, l.since ?? l.outageSeconds])).toEqual([
      ['brokers unreachable', '2026-11-27T10:00:00.500Z'], ['brokers reachable again', 8.5]]);
  });

  it('reminds once a minute while down, and logs the outage length when the brokers are back', () => {
    const { lines, metrics, health } = setUp();
    for (let s = 0; s <= 130; s++) health.onStats(stats('DOWN'), 'consumer', T0 + s * 1000);
    health.onStats(stats('UP'), 'consumer', T0 + 131_500);
    health.onStats(stats('UP'), 'consumer', T0 + 132_500);
    expect(lines.map((l) => [l.level, l.message, l.downSeconds ?? l.outageSeconds])).toEqual([
      ['warn', 'brokers unreachable', undefined],
      ['warn', 'brokers still unreachable', 60],
      ['warn', 'brokers still unreachable', 120],
      ['info', 'brokers reachable again', 131.5],
    ]);
    expect(metrics.brokersUp.get()).toBe(1);
    expect(health.outage).toBeUndefined();
  });

  it('counts the statistics of every client, but not those that have stopped coming', () => {
    const { lines, health } = setUp();
    health.onStats(stats('UP'), 'consumer', T0);
    // One client still connected: the cluster is reachable.
    health.onStats(stats('DOWN'), 'producer', T0 + 1000);
    health.onStats(stats('DOWN'), 'producer', T0 + 2000);
    health.onStats(stats('DOWN'), 'producer', T0 + 3000);
    expect(health.outage).toBeUndefined();
    // The consumer's statistics stopped at T0 (no consume call): 3 s later only the producer's count.
    health.onStats(stats('DOWN'), 'producer', T0 + 3001);
    expect(lines.map((l) => [l.message, l.since])).toEqual([['brokers unreachable', '2026-11-27T10:00:03.001Z']]);
    health.onStats(stats('UP'), 'producer', T0 + 4000);
    expect(health.outage).toBeUndefined();
  });

  it('ignores statistics before any broker is known from metadata, and malformed ones', () => {
    const { lines, health } = setUp();
    health.onStats(JSON.stringify({ brokers: { b: { name: 'b', nodeid: -1, state: 'DOWN' } } }), 'consumer', T0);
    health.onStats('{not json', 'consumer', T0);
    expect(lines).toEqual([]);
    expect(health.outage).toBeUndefined();
  });
});
