/**
 * `--guarantee exactly-once` on the real broker: a read_committed reader of the suspicious, regular and
 * dead-letter topics sees every input exactly once, with its right score, through processor SIGKILLs,
 * a broker killed -9, a rebalance, and a zombie instance, which is fenced. Also static membership
 * (`--instance-id`) and the settings exactly-once refuses.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { replay, type ReplayRecord } from '../lib/replay';
import { CANDIDATE_DIR, MODEL_PATH, loadTestVectors, replayRecords, row, type TestVectors, loadReference } from './helpers/fixtures';
import {
  brokers, committedOffsets, createTopics, createTopicSet, header, outputTopics, privateBroker, ProcessorProcess, produceAll,
  readCommitted, ROOT, runCli, topicFlags, type TopicSet, uniqueName,
} from './helpers/kafka';

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
});
afterAll(() => classifier.close());

/** Distinct valid requests, `i` naming each: its recordID and its test-vector row. */
function inputs(n: number, prefix: string): ReplayRecord[] {
  return replayRecords(vectors, prefix, n);
}

/** Sends `records` at `rate`/s while `during` runs; resolves when both are done. */
async function stream(bootstrap: string, topic: string, records: ReplayRecord[], rate: number,
  during: () => Promise<void>): Promise<void> {
  const sending = replay({ brokers: bootstrap, topic, records, rate, kafkaProperties: { 'message.timeout.ms': '300000' } });
  await during();
  expect(await sending).toMatchObject({ sent: records.length, failed: 0 });
}

/**
 * What a read_committed reader sees, once it sees at least `n` records or a minute has passed. A
 * SIGKILLed instance's open transaction holds back the last stable offset of its output partitions
 * until the broker aborts it (transaction.timeout.ms, checked every 10 s), and with it every later
 * commit on those partitions.
 */
async function committedView(topics: TopicSet, n: number, bootstrap = brokers()): Promise<Message[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const all = await readCommitted(outputTopics(topics), bootstrap);
    if (all.length >= n || Date.now() > deadline) return all;
    await sleep(2_000);
  }
}

/** Checks a read_committed view: every input exactly once, on the topic its score says, with that score. */
function expectExactlyOnce(all: Message[], topics: TopicSet, records: ReplayRecord[], prefix: string,
  processor?: ProcessorProcess): void {
  const seen = new Map<string, number>();
  const where = new Map<string, string[]>();
  for (const m of all) {
    expect(m.topic).not.toBe(topics.deadLetter);
    const r = decodeScoredRecord(m.value!);
    seen.set(r.recordID, (seen.get(r.recordID) ?? 0) + 1);
    where.set(r.recordID, [...(where.get(r.recordID) ?? []),
      `input ${r.sourcePartition}@${r.sourceOffset} -> ${m.topic.slice(-10)} ${m.partition}@${m.offset}`]);
    const i = Number(r.recordID.slice(prefix.length + 1));
    const expected = classifier.predict(row(vectors, i % vectors.rows));
    expect(r.score).toBe(expected);
    expect(m.topic).toBe(expected >= 0.5 ? topics.suspicious : topics.regular);
  }
  const twice = [...seen.values()].filter((n) => n > 1).length;
  process.stdout.write(`exactly-once: ${records.length} in, ${all.length} read_committed out, `
    + `${seen.size} distinct, ${twice} more than once\n`);
  if (twice > 0) {
    // Where each output seen twice came from and landed, and the processor's log: enough to tell which
    // transaction was visible twice.
    const doubles = [...where.entries()].filter(([, w]) => w.length > 1).map(([id, w]) => `${id}: ${w.join('; ')}`);
    process.stdout.write(`outputs seen twice:\n${doubles.join('\n')}\n`
      + `${processor ? `the processor's log:\n${processor.stderr}\n` : ''}`);
  }
  expect(seen.size).toBe(records.length);
  expect(all).toHaveLength(records.length);
}

function eos(topics: TopicSet, group: string, instance: string, bootstrap = brokers()): string[] {
  return ['--brokers', bootstrap, '--log-level', 'info', ...topicFlags(topics), '--group-id', group,
    '--guarantee', 'exactly-once', '--instance-id', instance];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Processors a test started: whatever is still running when it ends is killed. */
const started: ProcessorProcess[] = [];
function start(args: string[]): ProcessorProcess {
  const p = ProcessorProcess.start(args);
  started.push(p);
  return p;
}
afterEach(async () => {
  for (const p of started.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGCONT');
      await p.kill('SIGKILL');
    }
  }
});

/**
 * Waits until the group's committed offsets cover `n` inputs: under exactly-once they move with the
 * outputs, so every input then has a committed output.
 */
async function committedAll(group: string, topic: string, partitions: number, n: number, bootstrap = brokers(),
  processor?: ProcessorProcess) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    let sum = 0;
    try {
      sum = (await committedOffsets(group, topic, partitions, bootstrap)).reduce((a, o) => a + Math.max(0, o), 0);
    } catch (err) {
      // A reader that finds no group coordinator in time (a busy broker, a group rebalancing) asks again.
      if ((err as Error).message !== 'Local: Timed out') throw err;
    }
    if (sum === n) return;
    if (Date.now() > deadline) {
      throw new Error(`the group committed ${sum} of ${n} inputs; the processor's log ends:\n`
        + `${processor?.stderr.slice(-8000) ?? '(not given)'}`);
    }
    await sleep(1_000);
  }
}

describe('exactly-once through crashes', () => {
  it('outputs each of 20,000 inputs exactly once across three SIGKILLs and restarts', async () => {
    const topics = await createTopicSet('eos-kill', 3);
    const group = uniqueName('g-eos-kill');
    const records = inputs(20_000, 'k');
    let p = start(eos(topics, group, 'a'));
    await p.waitForLog('partitions assigned');
    await stream(brokers(), topics.input, records, 2_000, async () => {
      for (let kill = 0; kill < 3; kill++) {
        await sleep(1_500 + Math.floor(Math.random() * 1_500));
        expect(await p.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
        p = start(eos(topics, group, 'a'));
        await p.waitForLog('partitions assigned', 60_000);
      }
    });
    await committedAll(group, topics.input, 3, records.length);
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expectExactlyOnce(await committedView(topics, records.length), topics, records, 'k');
  }, 240_000);

  it('outputs each input exactly once when the broker is killed -9 and restarted mid-stream, without a restart of the processor', async () => {
    const state = path.join(ROOT, '.kafka', 'eos-broker');
    const kafka = privateBroker('eos-broker', 19492);
    const bootstrap = kafka('start');
    try {
      const topics = await createTopicSet('eos-bounce', 3, bootstrap);
      const group = uniqueName('g-eos-bounce');
      const records = inputs(10_000, 'b');
      // librdkafka's default session, not the 6 s the other tests take to hand a SIGKILLed instance's
      // partitions on quickly: a restarted broker loads the group and starts counting its members'
      // sessions some seconds before it answers them as their coordinator. A 6 s session then runs
      // out, and the member it drops can be fenced as its own replacement (fatal in librdkafka).
      const p = start([...eos(topics, group, 'a', bootstrap),
        '-X', 'session.timeout.ms=45000', '-X', 'heartbeat.interval.ms=3000']);
      await p.waitForLog('partitions assigned');
      await stream(bootstrap, topics.input, records, 1_000, async () => {
        await sleep(3_000);
        process.kill(Number(readFileSync(path.join(state, 'kafka.pid'), 'utf8')), 'SIGKILL');
        // Longer than transaction.timeout.ms (10 s): the restarted coordinator aborts the open
        // transaction and bumps the producer's epoch, which fences the producer that opened it.
        await sleep(12_000);
        kafka('start');
      });
      await committedAll(group, topics.input, 3, records.length, bootstrap, p);
      const renewals = p.stderr.split('\n').filter((l) => l.includes('"transactional producer replaced"')).length;
      const seals = p.stderr.split('\n').filter((l) => l.includes('"output partitions sealed"')).length;
      process.stdout.write(`broker bounce: the transactional producer was replaced ${renewals} times, the output partitions sealed ${seals} times\n`);
      // Every abort or replaced producer is followed by a seal before anything is read again.
      expect(seals).toBeGreaterThanOrEqual(renewals);
      expect(seals).toBeGreaterThanOrEqual(1);
      expect(p.child.exitCode).toBeNull();
      expect(p.stderr).not.toContain('"stopping after a fatal error"');
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      expectExactlyOnce(await committedView(topics, records.length, bootstrap), topics, records, 'b', p);
    } finally {
      kafka('stop');
    }
  }, 240_000);

  it('outputs each input exactly once when one of two instances on 4 partitions is SIGKILLed', async () => {
    const topics = await createTopicSet('eos-rebalance', 4);
    const group = uniqueName('g-eos-rebalance');
    const records = inputs(20_000, 'r');
    const a = start(eos(topics, group, 'a'));
    const b = start(eos(topics, group, 'b'));
    await a.waitForLog('partitions assigned');
    await b.waitForLog('partitions assigned');
    await stream(brokers(), topics.input, records, 2_000, async () => {
      await sleep(4_000);
      await b.kill('SIGKILL');
    });
    // b's partitions come to a once its session (6 s here) has expired.
    await committedAll(group, topics.input, 4, records.length);
    expect(await a.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expectExactlyOnce(await committedView(topics, records.length), topics, records, 'r');
  }, 240_000);
});

describe('outputs the brokers refuse', () => {
  it('costs a refusing shadow topic its shadow outputs only, and turns an output the topic refuses into a dead letter', async () => {
    const base = uniqueName('eos-refuse');
    const topics = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`, deadLetter: `${base}-in.dlq` };
    const shadowTopic = `${base}-shadow`;
    await createTopics([topics.input, topics.deadLetter]);
    // Scored outputs fit in 2,048 bytes, unless their input carries a 3 KB header; no shadow output fits in 100.
    await createTopics([topics.suspicious, topics.regular], 1, brokers(), { 'max.message.bytes': '2048' });
    await createTopics([shadowTopic], 1, brokers(), { 'max.message.bytes': '100' });
    const group = uniqueName('g-eos-refuse');
    const port = 19_561;
    const p = start([...eos(topics, group, 'r'), '--shadow-model', path.join(CANDIDATE_DIR, 'model.ubj'),
      '--shadow-topic', shadowTopic, '--max-message-bytes', '100000', '--metrics-port', String(port),
      // The broker's limit bounds a whole record batch: librdkafka's batches stay below it, so that the
      // broker refuses the one large output alone, as it would with a --max-message-bytes set too high.
      '-X', 'batch.size=1900']);
    await p.waitForLog('partitions assigned');
    const records = inputs(401, 'f');
    await replay({ brokers: brokers(), topic: topics.input, records: records.slice(0, 200) });
    await committedAll(group, topics.input, 1, 200, brokers(), p);
    // Alone in its batch, so that the broker refuses its output and no other.
    const big = records[200];
    await produceAll(topics.input, [{ key: big.recordID, value: encodePredictRequest({ recordID: big.recordID, featuresVector: [...big.features] }),
      headers: [{ padding: 'x'.repeat(3_000) }] }]);
    await committedAll(group, topics.input, 1, 201, brokers(), p);
    await replay({ brokers: brokers(), topic: topics.input, records: records.slice(201) });
    await committedAll(group, topics.input, 1, records.length, brokers(), p);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(p.child.exitCode).toBeNull();
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });

    const all = await committedView(topics, records.length);
    const dead = all.filter((m) => m.topic === topics.deadLetter);
    expect(dead.map((m) => [m.key!.toString(), header(m, 'xgb.error.reason')])).toEqual([[big.recordID, 'output-too-large']]);
    expectExactlyOnce(all.filter((m) => m.topic !== topics.deadLetter), topics, [...records.slice(0, 200), ...records.slice(201)], 'f');
    const lines = p.stderr.split('\n');
    const aborts = lines.filter((l) => l.includes('"transaction aborted; rewinding to the committed offsets"')).length;
    process.stdout.write(`refusals: ${aborts} aborted transactions, ${value('xgb_stream_shadow_delivery_failures_total')} shadow outputs refused\n`);
    expect(aborts).toBeGreaterThanOrEqual(1);
    expect(aborts).toBeLessThanOrEqual(2);
    // Every shadow output was refused, counted apart from the main outputs, and warned about once (a minute).
    // Shadow outputs are outside the transactions: the records of an aborted one write theirs again.
    expect(value('xgb_stream_shadow_delivery_failures_total')).toBeGreaterThanOrEqual(records.length);
    expect(value('xgb_stream_delivery_failures_total')).toBe(1);
    expect(lines.filter((l) => l.includes('"shadow outputs not delivered"'))).toHaveLength(1);
  }, 180_000);
});

describe('a zombie instance', () => {
  it('is fenced when a replacement with its instance id takes over: exit 1, nothing of it visible', async () => {
    const topics = await createTopicSet('eos-zombie', 2);
    const group = uniqueName('g-eos-zombie');
    const records = inputs(6_000, 'z');
    const zombie = start(eos(topics, group, 'z'));
    await zombie.waitForLog('partitions assigned');
    let replacement: ProcessorProcess | undefined;
    await stream(brokers(), topics.input, records, 1_000, async () => {
      await sleep(2_000);
      zombie.child.kill('SIGSTOP');
      // What an orchestrator does with an instance it believes dead: start another under its id.
      replacement = start(eos(topics, group, 'z'));
      await replacement.waitForLog('partitions assigned', 60_000);
      await sleep(1_000);
      zombie.child.kill('SIGCONT');
      const exit = await Promise.race([zombie.exited, sleep(60_000).then(() => 'still running')]);
      if (exit === 'still running') throw new Error(`the zombie did not stop:\n${zombie.stderr.slice(-6000)}\nits threads:\n${zombie.threadStacks()}`);
      expect(exit).toEqual({ code: 1, signal: null });
    });
    expect(zombie.stderr).toMatch(/"message":"stopping after a fatal error".*fatal consumer error: Local: Fatal error: the group fenced this instance, as it does when another instance joins with the same --instance-id 'z'/);
    // The zombie stopped rather than replace its fenced producer, which would have fenced the replacement in turn.
    expect(replacement!.stderr).not.toContain('transactional producer fenced');
    await committedAll(group, topics.input, 2, records.length);
    expect(await replacement!.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expectExactlyOnce(await committedView(topics, records.length), topics, records, 'z');
  }, 240_000);
});

describe('static membership', () => {
  it('gives a SIGKILLed instance restarted with its --instance-id its partitions back at once', async () => {
    const topics = await createTopicSet('static', 2);
    const group = uniqueName('g-static');
    // The default session timeout (45 s): without static membership a restart waits for it.
    const args = ['--log-level', 'info', ...topicFlags(topics), '--group-id', group, '--instance-id', 's1',
      '-X', 'session.timeout.ms=45000'];
    const first = start(args);
    await first.waitForLog('partitions assigned');
    await first.kill('SIGKILL');
    const restartedAt = Date.now();
    const second = start(args);
    await second.waitForLog('partitions assigned', 60_000);
    const seconds = (Date.now() - restartedAt) / 1000;
    process.stdout.write(`static membership: partitions back ${seconds.toFixed(1)} s after the restart\n`);
    expect(second.stderr).toContain('"assigned":[0,1]');
    expect(seconds).toBeLessThan(10);
    expect(await second.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 120_000);
});

describe('settings exactly-once refuses', () => {
  it('exits 2 for an unknown guarantee', async () => {
    const r = await runCli(['--guarantee', 'exactly-twice']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("xgb-stream: invalid --guarantee 'exactly-twice': expected one of at-least-once, exactly-once\n");
  });

  it('exits 2 for a librdkafka setting that contradicts transactions, naming it', async () => {
    const r = await runCli(['--guarantee', 'exactly-once', '-X', 'enable.idempotence=false']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('xgb-stream: -X enable.idempotence=false cannot be used with --guarantee exactly-once, '
      + 'which needs enable.idempotence=true\n');
  });

  it('exits 2 when the transactional.id is given by hand', async () => {
    const r = await runCli(['--guarantee', 'exactly-once', '-X', 'transactional.id=mine']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('xgb-stream: -X transactional.id cannot be set with --guarantee exactly-once: '
      + 'it is derived from --group-id and --instance-id\n');
  });
});
