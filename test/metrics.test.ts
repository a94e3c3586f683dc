/**
 * The operations endpoint: the Prometheus exposition of a processor that scored real records, and the
 * health and readiness answers.
 */
import { encodePredictRequest } from '../lib/codec';
import { ProcessorMetrics } from '../lib/metrics';
import { startMetricsServer } from '../lib/metrics-server';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Collector, ProcessorProcess, ROOT, createTopicSet, produceAll, topicFlags } from './helpers/kafka';
import { loadTestVectors, row } from './helpers/fixtures';
import { until } from './helpers/in-process';
import { freePort, get, sample } from './helpers/http';


describe('metrics endpoint', () => {
  it('reports counters that match the records processed, with Prometheus types', async () => {
    const vectors = loadTestVectors();
    const topics = await createTopicSet('metrics', 2);
    const good = 300;
    const records = Array.from({ length: good }, (_, i) => ({
      key: `m-${i}`, partition: i % 2,
      value: encodePredictRequest({ recordID: `m-${i}`, featuresVector: row(vectors, i) }),
    }));
    records.push({ key: 'junk', partition: 0, value: Buffer.from('not a protobuf message at all') });
    records.push({ key: 'short', partition: 1, value: encodePredictRequest({ recordID: 'short', featuresVector: [1, 2] }) });
    await produceAll(topics.input, records);

    const port = await freePort();
    const out = await Collector.start([topics.suspicious, topics.regular, topics.deadLetter]);
    const p = ProcessorProcess.start([...topicFlags(topics), '--metrics-port', String(port), '--log-level', 'info']);
    try {
      await out.waitFor(records.length, 60_000);
      const health = await get(port, '/healthz');
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
      const ready = await get(port, '/readyz');
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toEqual({ status: 'ready', assignedPartitions: [0, 1] });

      const metrics = await get(port, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.type).toBe('text/plain; version=0.0.4; charset=utf-8');
      const body = metrics.body;
      for (const [name, type] of [
        ['xgb_stream_records_in_total', 'counter'], ['xgb_stream_records_out_total', 'counter'],
        ['xgb_stream_dead_letters_total', 'counter'], ['xgb_stream_batch_size', 'histogram'],
        ['xgb_stream_inference_seconds', 'histogram'], ['xgb_stream_end_to_end_latency_seconds', 'histogram'],
        ['xgb_stream_consumer_lag', 'gauge'], ['xgb_stream_model_info', 'gauge'],
      ]) {
        expect(body).toContain(`# TYPE ${name} ${type}\n`);
      }
      const suspicious = out.of(topics.suspicious).length;
      const regular = out.of(topics.regular).length;
      expect(suspicious + regular).toBe(good);
      expect(sample(body, 'xgb_stream_records_in_total')).toBe(records.length);
      expect(sample(body, 'xgb_stream_ready')).toBe(1);
      expect(sample(body, `xgb_stream_records_out_total{topic="${topics.suspicious}"}`)).toBe(suspicious);
      expect(sample(body, `xgb_stream_records_out_total{topic="${topics.regular}"}`)).toBe(regular);
      expect(sample(body, `xgb_stream_records_out_total{topic="${topics.deadLetter}"}`)).toBe(2);
      expect(sample(body, 'xgb_stream_dead_letters_total{reason="undecodable"}')).toBe(1);
      expect(sample(body, 'xgb_stream_dead_letters_total{reason="wrong-feature-count"}')).toBe(1);
      expect(sample(body, 'xgb_stream_batch_size_sum')).toBe(records.length);
      expect(sample(body, 'xgb_stream_end_to_end_latency_seconds_count')).toBe(records.length);
      expect(sample(body, 'xgb_stream_consumer_lag{partition="0"}')).toBe(0);
      expect(sample(body, 'xgb_stream_consumer_lag{partition="1"}')).toBe(0);
      // The default model is trained by the pinned xgboost and scored by the same libxgboost.
      const pinned = (JSON.parse(readFileSync(path.join(ROOT, 'scripts', 'xgboost-version.json'), 'utf8')) as { version: string }).version;
      const escaped = pinned.replace(/\./g, '\\.');
      expect(body).toMatch(new RegExp(`^xgb_stream_model_info\\{libxgboost="${escaped}",saved_by_xgboost="${escaped}",version="sim-s42-[0-9a-f]{12}"\\} 1$`, 'm'));
      expect((await get(port, '/nope')).status).toBe(404);
    } finally {
      await p.kill('SIGTERM');
      await out.stop();
    }
  });

  it('shows a backlog as lag while it lasts, and the exact counts once it is drained', async () => {
    const vectors = loadTestVectors();
    const topics = await createTopicSet('metrics-backlog', 2);
    // Some seconds of backlog at batches of one, several of the once-a-second lag refreshes.
    const n = 10_000;
    await produceAll(topics.input, Array.from({ length: n }, (_, i) => ({
      key: `b-${i}`, partition: i % 2,
      value: encodePredictRequest({ recordID: `b-${i}`, featuresVector: row(vectors, i) }),
    })));
    const port = await freePort();
    // Batches of one: the backlog lasts seconds, long enough to be scraped.
    const p = ProcessorProcess.start([...topicFlags(topics), '--metrics-port', String(port), '--log-level', 'info',
      '--batch-size', '1', '--batch-wait-ms', '0']);
    try {
      let lagSeen = 0;
      let body = '';
      const out = () => (sample(body, `xgb_stream_records_out_total{topic="${topics.suspicious}"}`) ?? 0)
        + (sample(body, `xgb_stream_records_out_total{topic="${topics.regular}"}`) ?? 0);
      await until('the backlog drained', async () => {
        try {
          body = (await get(port, '/metrics')).body;
        } catch {
          return false; // the endpoint is not up yet
        }
        const lag = (sample(body, 'xgb_stream_consumer_lag{partition="0"}') ?? 0)
          + (sample(body, 'xgb_stream_consumer_lag{partition="1"}') ?? 0);
        lagSeen = Math.max(lagSeen, lag);
        return out() === n;
      }, 120_000);
      process.stdout.write(`backlog: largest lag scraped ${lagSeen} of ${n}\n`);
      expect(lagSeen).toBeGreaterThan(0);
      // Once everything is out, lag is refreshed on the next scrape: poll until both partitions read 0.
      await until('lag 0 on both partitions', async () => {
        body = (await get(port, '/metrics')).body;
        return sample(body, 'xgb_stream_consumer_lag{partition="0"}') === 0
          && sample(body, 'xgb_stream_consumer_lag{partition="1"}') === 0;
      });
      expect(sample(body, 'xgb_stream_records_in_total')).toBe(n);
      expect(sample(body, 'xgb_stream_records_in_flight')).toBe(0);
      expect(sample(body, 'xgb_stream_assigned_partitions')).toBe(2);
      expect(sample(body, 'xgb_stream_delivery_failures_total')).toBe(0);
      expect(sample(body, 'xgb_stream_batch_size_count')).toBe(n);
      expect(sample(body, 'xgb_stream_batch_size_sum')).toBe(n);
      // One prediction per batch, each taking some time.
      expect(sample(body, 'xgb_stream_inference_seconds_count')).toBe(n);
      expect(sample(body, 'xgb_stream_inference_seconds_sum')).toBeGreaterThan(0);
      expect(sample(body, 'xgb_stream_end_to_end_latency_seconds_count')).toBe(n);
    } finally {
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    }
  }, 180_000);

  it('answers /readyz with 503 while no partitions are assigned', async () => {
    const metrics = new ProcessorMetrics();
    const { server, port } = await startMetricsServer(0, metrics,
      { ready: false, assignedPartitions: [], refreshLag: () => undefined }, {}, '127.0.0.1');
    try {
      const ready = await get(port, '/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body)).toEqual({ status: 'not ready', assignedPartitions: [] });
      expect((await get(port, '/healthz')).status).toBe(200);
    } finally {
      server.close();
    }
  });

  it('answers /readyz with 503 and the reason during a broker outage', async () => {
    const reason = 'brokers 127.0.0.1:9092 unreachable since 2026-11-27T10:00:01.000Z: Connection refused';
    const { server, port } = await startMetricsServer(0, new ProcessorMetrics(),
      { ready: false, notReadyReason: reason, assignedPartitions: [0, 1], refreshLag: () => undefined }, {}, '127.0.0.1');
    try {
      const ready = await get(port, '/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body)).toEqual({ status: 'not ready', reason, assignedPartitions: [0, 1] });
    } finally {
      server.close();
    }
  });
});

describe('metrics registry', () => {
  it("adds prom-client's default process metrics under their standard names", async () => {
    const text = await new ProcessorMetrics().render();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds', 'nodejs_gc_duration_seconds']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('gives each processor its own registry', async () => {
    const a = new ProcessorMetrics();
    const b = new ProcessorMetrics();
    a.recordsIn.inc({}, 5);
    expect(await a.render()).toContain('xgb_stream_records_in_total 5\n');
    expect(await b.render()).toContain('xgb_stream_records_in_total 0\n');
  });

  it('renders histograms with cumulative buckets, sum and count', async () => {
    const m = new ProcessorMetrics();
    m.batchSize.observe(3);
    m.batchSize.observe(700);
    const text = await m.render();
    expect(text).toContain('xgb_stream_batch_size_bucket{le="2"} 0\n');
    expect(text).toContain('xgb_stream_batch_size_bucket{le="5"} 1\n');
    expect(text).toContain('xgb_stream_batch_size_bucket{le="1000"} 2\n');
    expect(text).toContain('xgb_stream_batch_size_bucket{le="+Inf"} 2\n');
    expect(text).toContain('xgb_stream_batch_size_sum 703\n');
    expect(text).toContain('xgb_stream_batch_size_count 2\n');
  });

  it('escapes label values', async () => {
    const m = new ProcessorMetrics();
    m.deadLetters.inc({ reason: 'a"b\\c' });
    expect(await m.render()).toContain('xgb_stream_dead_letters_total{reason="a\\"b\\\\c"} 1\n');
  });
});
