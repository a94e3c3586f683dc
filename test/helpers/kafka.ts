/**
 * Test helpers for the real broker: unique topics, a producer that waits for delivery, a collector
 * that reads topics from the beginning in the background, and the processor binary as a child process.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import {
  AdminClient, CODES, KafkaConsumer, Producer, type LibrdKafkaError, type Message, type MessageHeader, type Metadata,
} from 'node-rdkafka';
import { topicsVisible } from '../../scripts/harness';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

/** The bootstrap address the global setup exported (the local broker, or KAFKA_BROKERS). */
export function brokers(): string {
  const b = process.env.KAFKA_BROKERS;
  if (!b) throw new Error('KAFKA_BROKERS is not set: run the tests through jest (its global setup starts Kafka)');
  return b;
}

/** A topic name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Creates topics with the given number of partitions. */
export async function createTopics(names: readonly string[], partitions = 1, bootstrap = brokers(),
  config: Record<string, string> = {}): Promise<void> {
  const admin = AdminClient.create({ 'bootstrap.servers': bootstrap });
  try {
    for (const topic of names) {
      await new Promise<void>((resolve, reject) => {
        admin.createTopic({ topic, num_partitions: partitions, replication_factor: 1, config }, 30_000,
          (err) => (err ? reject(new Error(`create ${topic}: ${err.message}`)) : resolve()));
      });
    }
  } finally {
    admin.disconnect();
  }
  await topicsVisible(bootstrap, new Map(names.map((n) => [n, partitions])));
}

/** The four topics of one processor run, created fresh. */
export interface TopicSet {
  input: string;
  suspicious: string;
  regular: string;
  deadLetter: string;
}

/** Creates a fresh set of input, output and dead-letter topics. */
export async function createTopicSet(prefix: string, inputPartitions = 1, bootstrap = brokers()): Promise<TopicSet> {
  const base = uniqueName(prefix);
  const set = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`, deadLetter: `${base}-in.dlq` };
  await createTopics([set.input], inputPartitions, bootstrap);
  await createTopics([set.suspicious, set.regular, set.deadLetter], 1, bootstrap);
  return set;
}

/** The three output topics of a topic set. */
export function outputTopics(t: TopicSet): string[] {
  return [t.suspicious, t.regular, t.deadLetter];
}

/** The processor flags naming a topic set. */
export function topicFlags(t: TopicSet): string[] {
  return ['--input-topic', t.input, '--suspicious-topic', t.suspicious, '--regular-topic', t.regular,
    '--dead-letter-topic', t.deadLetter];
}

/** One record to produce. */
export interface OutgoingRecord {
  value: Buffer | null;
  key?: string | Buffer | null;
  partition?: number;
  headers?: MessageHeader[];
  timestamp?: number;
}

/** Produces records and resolves once every one has a successful delivery report. */
export async function produceAll(topic: string, records: readonly OutgoingRecord[], bootstrap = brokers(),
  properties: Record<string, string | number> = {}): Promise<void> {
  const producer = new Producer({ 'bootstrap.servers': bootstrap, 'dr_cb': true, 'linger.ms': 5,
    'enable.idempotence': true, ...properties });
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  producer.setPollInterval(5);
  let pending = records.length;
  let failure: Error | undefined;
  const done = new Promise<void>((resolve) => {
    if (pending === 0) resolve();
    producer.on('delivery-report', (err) => {
      if (err) failure = new Error(err.message);
      if (--pending === 0) resolve();
    });
  });
  for (const r of records) {
    for (;;) {
      try {
        producer.produce(topic, r.partition ?? null, r.value, r.key ?? undefined, r.timestamp ?? Date.now(),
          undefined, r.headers);
        break;
      } catch (err) {
        if ((err as { code?: number }).code !== CODES.ERRORS.ERR__QUEUE_FULL) throw err;
        await new Promise((res) => setTimeout(res, 10));
      }
    }
  }
  await done;
  // Stopped before disconnect destroys the handle: a poll tick during that is a segfault.
  producer.setPollInterval(0);
  await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
  if (failure) throw failure;
}

/** Reads topics from the beginning in the background and keeps every message. */
export class Collector {
  readonly messages: Message[] = [];
  private readonly consumer: KafkaConsumer;
  private running = true;
  private loop: Promise<void> = Promise.resolve();

  private constructor(private readonly topics: readonly string[], bootstrap: string) {
    this.consumer = new KafkaConsumer({
      'bootstrap.servers': bootstrap, 'group.id': uniqueName('collector'), 'enable.auto.commit': false,
      'enable.partition.eof': false,
    }, { 'auto.offset.reset': 'earliest' });
  }

  /**
   * Starts collecting the given topics. Its count tells a test how far a processor has got; final
   * counts come from {@link readToEnd}, never from a collector stopped after a pause.
   */
  static async start(topics: readonly string[], bootstrap = brokers()): Promise<Collector> {
    const c = new Collector(topics, bootstrap);
    await new Promise<void>((resolve, reject) => c.consumer.connect({}, (err) => (err ? reject(err) : resolve())));
    c.consumer.subscribe([...c.topics]);
    c.consumer.setDefaultConsumeTimeout(100);
    c.loop = (async () => {
      while (c.running) {
        const batch = await new Promise<Message[]>((resolve) => c.consumer.consume(1000, (err, m) => resolve(err ? [] : m)));
        c.messages.push(...batch);
      }
    })();
    return c;
  }

  /** Messages of one topic. */
  of(topic: string): Message[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  /** Waits until at least `count` messages arrived. */
  async waitFor(count: number, timeoutMs = 60_000): Promise<Message[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms with ${this.messages.length} of ${count} messages`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    return this.messages;
  }

  /** Stops collecting and disconnects. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
  }
}

/**
 * Every record of the given topics, read from the start of each partition up to its high watermark
 * as it is when called: after the processor has exited, that is everything it will ever have written,
 * so a late duplicate cannot slip past the count.
 */
export async function readToEnd(topics: readonly string[], bootstrap = brokers()): Promise<Message[]> {
  const consumer = new KafkaConsumer({
    'bootstrap.servers': bootstrap, 'group.id': uniqueName('reader'), 'enable.auto.commit': false,
    'enable.partition.eof': false,
  }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({}, (err) => (err ? reject(err) : resolve())));
  try {
    const metadata = await new Promise<{ topics: Array<{ name: string; partitions: Array<{ id: number }> }> }>(
      (resolve, reject) => consumer.getMetadata({ timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    const highs: Array<{ topic: string; partition: number; high: number }> = [];
    for (const topic of topics) {
      const found = metadata.topics.find((t) => t.name === topic);
      if (!found) throw new Error(`readToEnd: no topic ${topic}`);
      for (const { id } of found.partitions) {
        const high = await new Promise<number>((resolve, reject) => consumer.queryWatermarkOffsets(topic, id, 10_000,
          (err, w) => (err ? reject(err) : resolve(w.highOffset))));
        if (high > 0) highs.push({ topic, partition: id, high });
      }
    }
    const messages: Message[] = [];
    if (highs.length === 0) return messages;
    consumer.assign(highs.map(({ topic, partition }) => ({ topic, partition, offset: 0 })));
    consumer.setDefaultConsumeTimeout(200);
    const left = new Map(highs.map((h) => [`${h.topic}/${h.partition}`, h.high]));
    const deadline = Date.now() + 60_000;
    while (left.size > 0) {
      if (Date.now() > deadline) throw new Error(`readToEnd: timed out with ${messages.length} messages`);
      const batch = await new Promise<Message[]>((resolve, reject) =>
        consumer.consume(1000, (err, m) => (err ? reject(err) : resolve(m))));
      for (const m of batch) {
        const key = `${m.topic}/${m.partition}`;
        const high = left.get(key);
        if (high === undefined) continue;
        if (m.offset < high) messages.push(m);
        if (m.offset >= high - 1) left.delete(key);
      }
    }
    return messages;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

/** What a group coordinator that is still loading, or moving, answers. */
const COORDINATOR_NOT_READY: ReadonlySet<number> = new Set([CODES.ERRORS.ERR_NOT_COORDINATOR_FOR_GROUP,
  CODES.ERRORS.ERR_COORDINATOR_NOT_AVAILABLE, CODES.ERRORS.ERR_COORDINATOR_LOAD_IN_PROGRESS,
  CODES.ERRORS.ERR__WAIT_COORD, CODES.ERRORS.ERR__TIMED_OUT]);

/** The offsets a consumer group has committed on the partitions of a topic (-1001 where none). */
export async function committedOffsets(groupId: string, topic: string, partitions: number,
  bootstrap = brokers()): Promise<number[]> {
  const consumer = new KafkaConsumer({ 'bootstrap.servers': bootstrap, 'group.id': groupId,
    'enable.auto.commit': false }, {});
  await new Promise<void>((resolve, reject) => consumer.connect({}, (err) => (err ? reject(err) : resolve())));
  try {
    const toppars = Array.from({ length: partitions }, (_, partition) => ({ topic, partition }));
    const ask = () => new Promise<Array<{ partition: number; offset?: number }>>((resolve, reject) =>
      consumer.committed(toppars, 10_000, (err, tp) => (err ? reject(err) : resolve(tp))));
    // A broker that has just restarted answers for a while that it is not (yet) the group's
    // coordinator: asked again until it is, for up to 30 s.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const committed = await ask();
        return committed.sort((a, b) => a.partition - b.partition).map((tp) => tp.offset ?? -1001);
      } catch (err) {
        if (!COORDINATOR_NOT_READY.has((err as LibrdKafkaError).code) || Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

/** A header's value as a string, from node-rdkafka's list of one-key objects. */
export function header(m: Message, key: string): string | undefined {
  for (const h of m.headers ?? []) if (key in h) return h[key].toString();
  return undefined;
}

/** A running processor child process. */
export class ProcessorProcess {
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => { this.stdout += d.toString(); });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts `xgb-stream` with the given flags against the test broker. */
  static start(args: readonly string[], env: Record<string, string> = {}): ProcessorProcess {
    const child = spawn(process.execPath, [CLI, '--brokers', brokers(), '-X', 'session.timeout.ms=6000',
      '-X', 'heartbeat.interval.ms=500', ...args], {
      cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ProcessorProcess(child);
  }

  /** Waits until the processor logs that it holds partitions (needs --log-level info or debug). */
  async waitForLog(fragment: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stderr.includes(fragment)) {
      if (Date.now() > deadline) throw new Error(`no '${fragment}' in the processor's log:\n${this.stderr}`);
      if (this.child.exitCode !== null) throw new Error(`processor exited ${this.child.exitCode}:\n${this.stderr}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /**
   * Every thread's stack, through gdb when the machine has it: what a process that does not exit is
   * waiting for, printed beside its log when a test gives up on it.
   */
  threadStacks(): string {
    if (this.child.exitCode !== null || this.child.pid === undefined) return '(exited)';
    const gdb = spawnSync('gdb', ['-p', String(this.child.pid), '-batch', '-ex', 'thread apply all bt 30'],
      { encoding: 'utf8', timeout: 60_000 });
    if (gdb.error) return `(no thread stacks: ${gdb.error.message})`;
    return gdb.stdout.split('\n').filter((l) => /^(Thread|#)/.test(l)).join('\n');
  }

  /** Sends a signal and waits for the exit. */
  async kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill(signal);
    return this.exited;
  }
}

/** Runs the processor binary to completion (for flag and start-up errors). */
export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 60_000):
  Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new ProcessorProcess(spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  return p.exited.then(({ code }) => {
    clearTimeout(timer);
    return { code, stdout: p.stdout, stderr: p.stderr };
  });
}

/** How many partitions a topic has. */
export async function partitionCount(topic: string, bootstrap = brokers()): Promise<number> {
  const admin = new KafkaConsumer({ 'bootstrap.servers': bootstrap, 'group.id': uniqueName('meta') }, {});
  await new Promise<void>((resolve, reject) => admin.connect({}, (err) => (err ? reject(err) : resolve())));
  try {
    const metadata = await new Promise<{ topics: Array<{ name: string; partitions: unknown[] }> }>(
      (resolve, reject) => admin.getMetadata({ topic, timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    const found = metadata.topics.find((t) => t.name === topic);
    if (!found) throw new Error(`no topic ${topic}`);
    return found.partitions.length;
  } finally {
    await new Promise<void>((resolve) => admin.disconnect(() => resolve()));
  }
}

/**
 * Every record of the given topics that a read_committed reader sees, from the start of each
 * partition to its end (the last stable offset). Call it once no transaction is open: after the
 * processors have exited, or have committed what they wrote.
 */
export async function readCommitted(topics: readonly string[], bootstrap = brokers()): Promise<Message[]> {
  const consumer = new KafkaConsumer({
    'bootstrap.servers': bootstrap, 'group.id': uniqueName('committed-reader'), 'enable.auto.commit': false,
    'enable.partition.eof': true, 'isolation.level': 'read_committed',
  }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({}, (err) => (err ? reject(err) : resolve())));
  try {
    const metadata = await new Promise<{ topics: Array<{ name: string; partitions: Array<{ id: number }> }> }>(
      (resolve, reject) => consumer.getMetadata({ timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    const all: Array<{ topic: string; partition: number }> = [];
    for (const topic of topics) {
      const found = metadata.topics.find((t) => t.name === topic);
      if (!found) throw new Error(`readCommitted: no topic ${topic}`);
      for (const { id } of found.partitions) all.push({ topic, partition: id });
    }
    const left = new Set(all.map((t) => `${t.topic}/${t.partition}`));
    consumer.on('partition.eof', (eof: { topic: string; partition: number }) => left.delete(`${eof.topic}/${eof.partition}`));
    consumer.assign(all.map((t) => ({ ...t, offset: 0 })));
    consumer.setDefaultConsumeTimeout(200);
    const messages: Message[] = [];
    const deadline = Date.now() + 60_000;
    while (left.size > 0) {
      if (Date.now() > deadline) throw new Error(`readCommitted: timed out with ${messages.length} messages`);
      const batch = await new Promise<Message[]>((resolve, reject) =>
        consumer.consume(1000, (err, m) => (err ? reject(err) : resolve(m))));
      messages.push(...batch);
    }
    return messages;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

/**
 * `scripts/kafka.sh` for a broker of a test's own (its state in `.kafka/<name>`, on `port`), for the
 * tests that stop, kill and restart it under a processor; returns what the script printed last (the
 * bootstrap address for `start`). A failure throws with the script's own words. A start right after
 * the broker was killed -9 is tried once more before it fails: what the test checks is the
 * processor, not how soon a killed broker's traces clear.
 */
export function privateBroker(name: string, port: number): (cmd: 'start' | 'stop') => string {
  const env = { ...process.env, KAFKA_STATE_DIR: path.join(ROOT, '.kafka', name), KAFKA_PORT: String(port) };
  const run = (cmd: string): string => {
    try {
      return execFileSync('bash', [path.join(ROOT, 'scripts/kafka.sh'), cmd],
        { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop()!;
    } catch (err) {
      const e = err as { status?: number; stderr?: string };
      throw new Error(`scripts/kafka.sh ${cmd} (${name}) exited ${e.status}: ${e.stderr?.trim()}`);
    }
  };
  return (cmd) => {
    if (cmd !== 'start') return run(cmd);
    try {
      return run(cmd);
    } catch (err) {
      process.stdout.write(`${(err as Error).message}\ntrying once more in 2 s\n`);
      execFileSync('sleep', ['2']);
      return run(cmd);
    }
  };
}

