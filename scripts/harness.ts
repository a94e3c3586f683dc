/**
 * The running pieces the demo and the benchmark share: the broker (the local one, started and stopped
 * through scripts/kafka.sh, or an existing cluster left alone), fresh topics, the processor as a child
 * process, and a consumer that reads the output topics and notes when each message arrived.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { AdminClient, KafkaConsumer, Producer, type Message, type Metadata } from 'node-rdkafka';
import type { DemoTopics, ModelCardMetrics, ObservedMessage } from './demo-summary';
import { UsageError } from './options';

export const ROOT = path.resolve(__dirname, '..');
const KAFKA_SH = path.join(ROOT, 'scripts', 'kafka.sh');
const CLI = path.join(ROOT, 'dist', 'cli.js');

function run(cmd: string, args: readonly string[], inheritStderr: boolean): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', inheritStderr ? 'inherit' : 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout }));
  });
}

/** The broker a run talks to, and whether this run started it (and so must stop it). */
export class Broker {
  private constructor(readonly brokers: string, private started: boolean) {}

  /**
   * Uses `given` (an existing cluster) when set; otherwise the local broker, started through
   * scripts/kafka.sh unless it already runs. Pass `onStarting` to learn, before the broker is up, that
   * this run owns it: an interrupt during the start must still stop it.
   */
  static async use(given: string | undefined, onStarting?: (broker: Broker) => void): Promise<Broker> {
    if (given) return new Broker(given, false);
    const status = await run('bash', [KAFKA_SH, 'status'], false);
    const running = /^running/m.test(status.stdout);
    const broker = new Broker('', !running);
    onStarting?.(broker);
    const out = await run('bash', [KAFKA_SH, 'start'], true);
    const lines = out.stdout.trim().split('\n');
    if (out.code !== 0 || lines[lines.length - 1].trim() === '') {
      throw new Error(`scripts/kafka.sh start failed (exit ${out.code}); see .kafka/logs/`);
    }
    return new Broker(lines[lines.length - 1].trim(), broker.started);
  }

  /** Whether stop() will stop a broker. */
  get owned(): boolean {
    return this.started;
  }

  /** Stops the local broker when this run started it; a no-op otherwise, and the second time. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await run('bash', [KAFKA_SH, 'stop'], true);
  }
}

/** A fresh set of topics named `<prefix>-<time>-<random>-…`, so reruns never mix. */
export async function createTopics(brokers: string, prefix: string, partitions = 1,
  kafkaProperties: Readonly<Record<string, string>> = {}): Promise<DemoTopics> {
  const base = `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const topics = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`,
    deadLetter: `${base}-in.dlq` };
  const admin = AdminClient.create({ 'bootstrap.servers': brokers, ...kafkaProperties });
  try {
    for (const [topic, n] of [[topics.input, partitions], [topics.suspicious, 1], [topics.regular, 1],
      [topics.deadLetter, 1]] as const) {
      await new Promise<void>((resolve, reject) => {
        admin.createTopic({ topic, num_partitions: n, replication_factor: 1 }, 30_000,
          (err) => (err ? reject(new Error(`could not create topic ${topic} on ${brokers}: ${err.message}`)) : resolve()));
      });
    }
  } finally {
    admin.disconnect();
  }
  await topicsVisible(brokers, new Map([[topics.input, partitions], [topics.suspicious, 1], [topics.regular, 1],
    [topics.deadLetter, 1]]), kafkaProperties);
  return topics;
}

/**
 * Waits until the broker's metadata lists every topic with its number of partitions. A created topic
 * reaches the metadata a moment after the controller has acknowledged it, longer on a broker that has
 * just started, and the processor checks its topics there once, at start.
 */
export async function topicsVisible(brokers: string, expected: ReadonlyMap<string, number>,
  kafkaProperties: Readonly<Record<string, string>> = {}): Promise<void> {
  const client = new Producer({ 'bootstrap.servers': brokers, ...kafkaProperties });
  await new Promise<void>((resolve, reject) => client.connect({}, (err) => (err ? reject(err) : resolve())));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const md = await new Promise<Metadata>((resolve, reject) =>
        client.getMetadata({ allTopics: true, timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
      const listed = new Map(md.topics.map((t) => [t.name, t.partitions.length]));
      const missing = [...expected].filter(([name, n]) => listed.get(name) !== n).map(([name]) => name);
      if (missing.length === 0) return;
      if (Date.now() > deadline) throw new Error(`topics not in the metadata of ${brokers} after 30 s: ${missing.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await new Promise<void>((resolve) => client.disconnect(() => resolve()));
  }
}

/** The processor flags naming a topic set. */
export function topicFlags(t: DemoTopics): string[] {
  return ['--input-topic', t.input, '--suspicious-topic', t.suspicious, '--regular-topic', t.regular,
    '--dead-letter-topic', t.deadLetter];
}

/** `xgb-stream` (dist/cli.js) as a child process, its log kept (the last 256 KiB) for error messages. */
let ticksPerSecond: number | undefined;
/** The kernel's clock tick (USER_HZ), the unit of /proc's CPU times. */
function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

export class ProcessorChild {
  private log = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private constructor(readonly child: ChildProcess) {
    const keep = (d: Buffer): void => {
      this.log += d.toString();
      if (this.log.length > 256 * 1024) this.log = this.log.slice(-128 * 1024);
    };
    child.stderr!.on('data', keep);
    child.stdout!.on('data', keep);
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts the processor with `--log-level info` (to see the assignment) and the given flags. */
  static start(brokers: string, args: readonly string[], env: Record<string, string> = {}): ProcessorChild {
    return new ProcessorChild(spawn(process.execPath, [CLI, '--brokers', brokers, '--log-level', 'info', ...args], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
    }));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** CPU seconds the processor has used so far, all its threads (utime + stime from /proc). */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: utime and stime
    // are the 14th and 15th fields of the line, in clock ticks.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
  }

  /** The end of the processor's log. */
  tail(lines = 20): string {
    return this.log.trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Waits until the processor holds its partitions, so that replayed records are not kept waiting. */
  async waitUntilAssigned(timeoutMs = 60_000, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.log.includes('"partitions assigned"') && !signal?.aborted) {
      if (!this.running) throw new Error(`the processor exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.tail()}`);
      if (Date.now() > deadline) {
        throw new Error(`the processor got no partitions within ${timeoutMs / 1000} s:\n${this.tail()}`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** Stops gracefully with SIGTERM; SIGKILL when it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 40_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    if (!this.running) return { ...(await this.exited), killed: false };
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), timeoutMs); });
    const first = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (first !== 'late') return { ...first, killed: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), killed: true };
  }
}

/** The processor's delivery guarantees, as the demo and the bench take them. */
export type Guarantee = 'at-least-once' | 'exactly-once';

/** Checks a --guarantee value. */
export function parseGuarantee(raw: string): Guarantee {
  if (raw !== 'at-least-once' && raw !== 'exactly-once') {
    throw new UsageError(`invalid --guarantee '${raw}': expected at-least-once or exactly-once`);
  }
  return raw;
}

/** The header of the output reader's readiness markers, which it reads back and never keeps. */
const MARKER_HEADER = 'xgb-bench.marker';

/**
 * Reads topics from the beginning and keeps every message with the time it arrived. One message is
 * awaited for up to 100 ms, then whatever is already fetched is taken without waiting: librdkafka's
 * consume(n) would otherwise hold arrived messages until n are there, adding to the measured latency.
 */
export class OutputReader {
  readonly messages: ObservedMessage[] = [];
  private running = true;
  private loop: Promise<void> = Promise.resolve();
  private constructor(private readonly consumer: KafkaConsumer) {}

  static async start(brokers: string, topics: readonly string[],
    kafkaProperties: Readonly<Record<string, string>> = {}, options: { waitUntilReading?: boolean } = {}): Promise<OutputReader> {
    const consumer = new KafkaConsumer({
      'bootstrap.servers': brokers,
      'group.id': `xgb-stream-reader-${randomBytes(4).toString('hex')}`,
      'enable.auto.commit': false,
      'enable.partition.eof': false,
      'fetch.wait.max.ms': 10,
      // Outputs of exactly-once processing count once their transaction commits (librdkafka's default).
      'isolation.level': 'read_committed',
      ...kafkaProperties,
    }, { 'auto.offset.reset': 'earliest' });
    await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 },
      (err) => (err ? reject(new Error(`could not connect the output reader to ${brokers}: ${err.message}`)) : resolve())));
    consumer.subscribe([...topics]);
    const reader = new OutputReader(consumer);
    reader.loop = reader.read();
    if (options.waitUntilReading) {
      try {
        await reader.waitUntilReading(brokers, topics, kafkaProperties);
      } catch (err) {
        await reader.stop();
        throw err;
      }
    }
    return reader;
  }

  /** Topics on which this reader's marker has come back. */
  private readonly markersSeen = new Set<string>();

  /**
   * Writes a marker record (header MARKER_HEADER, never kept as an output) to every topic and waits
   * until the reader has read each one back: the group is joined, the offsets are resolved and the
   * fetches run. An assignment alone is not enough: the first fetch comes some 100 ms after it, and
   * outputs written before then would count that as latency.
   */
  private async waitUntilReading(brokers: string, topics: readonly string[],
    kafkaProperties: Readonly<Record<string, string>>, timeoutMs = 30_000): Promise<void> {
    const producer = new Producer({ 'bootstrap.servers': brokers, 'linger.ms': 0, ...kafkaProperties });
    await new Promise<void>((resolve, reject) => producer.connect({ timeout: 30_000 },
      (err) => (err ? reject(new Error(`could not connect the marker producer to ${brokers}: ${err.message}`)) : resolve())));
    try {
      const id = randomBytes(6).toString('hex');
      for (const t of topics) producer.produce(t, null, Buffer.from('marker'), null, Date.now(), undefined, [{ [MARKER_HEADER]: id }]);
      await new Promise<void>((resolve, reject) => producer.flush(timeoutMs, (err) => (err ? reject(err) : resolve())));
      const deadline = Date.now() + timeoutMs;
      while (this.markersSeen.size < topics.length) {
        if (Date.now() > deadline) throw new Error(`the output reader did not read its markers back within ${timeoutMs / 1000} s`);
        await new Promise((res) => setTimeout(res, 5));
      }
    } finally {
      await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
    }
  }

  private consume(n: number, timeoutMs: number): Promise<Message[]> {
    this.consumer.setDefaultConsumeTimeout(timeoutMs);
    return new Promise((resolve) => this.consumer.consume(n, (err, m) => resolve(err ? [] : m)));
  }

  private async read(): Promise<void> {
    while (this.running) {
      let batch = await this.consume(1, 100);
      if (batch.length > 0) batch = batch.concat(await this.consume(499, 1));
      const at = Date.now();
      for (const m of batch) {
        if (m.headers?.some((h) => MARKER_HEADER in h)) {
          this.markersSeen.add(m.topic);
          continue;
        }
        this.messages.push({ topic: m.topic, value: m.value, headers: m.headers, timestamp: m.timestamp, receivedAtMs: at });
      }
    }
  }

  /** Stops reading and disconnects. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.loop;
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
  }
}

/** Reads models/default/model-card.json's held-out metrics, or undefined when there is none. */
export function readModelCardMetrics(file: string): ModelCardMetrics | undefined {
  let card;
  try {
    card = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  return card?.metrics?.confusionMatrix ? card.metrics : undefined;
}

/**
 * Calls `onGone` once when this process's parent exits. `npm run` forwards SIGTERM only to the shell
 * it runs the script in, which dies without passing it on; noticing the orphaning lets the demo and
 * the benchmark still stop what they started.
 */
export function whenParentExits(onGone: () => void): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone();
    }
  }, 500);
  timer.unref();
}
