/**
 * `npm run bench`: the processor end to end on a real broker, once with batches of one record (the
 * original design: one DMatrix per record) and once with the default batching.
 *  - throughput: N records preloaded into a fresh topic, then the processor started; records/s from
 *    the first to the last output's CreateTime, and the processor's CPU time (all its threads, from
 *    /proc) per record while it drained them;
 *  - latency, at each offered rate: the processor already running, records sent at that rate by a
 *    producer with linger.ms 1; for each output, the time this process received it minus the
 *    input's CreateTime (when it was sent).
 * Writes bench-results/<timestamp>.json and a PNG plot beside it (bench-results/ is git-ignored).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdminClient, librdkafkaVersion } from 'node-rdkafka';
import { decodeScoredRecord } from '../lib/codec';
import { loadNative } from '../lib/native';
import { randomRecords, readReplayFile, replay, type ReplayRecord } from '../lib/replay';
import { summarise, type DemoTopics, type ObservedMessage } from './demo-summary';
import {
  Broker, createTopics, OutputReader, parseGuarantee, ProcessorChild, ROOT, topicFlags, whenParentExits, type Guarantee,
} from './harness';
import { isMainScript, kafkaPropertyFlags, numberFlag, numberListFlag, readFlags, UsageError } from './options';

const HELP = `Usage: npm run bench -- [options]

  --brokers <host:port,...>  use this cluster instead of starting the local broker [KAFKA_BROKERS]
  --records <n>              records preloaded for the throughput run (default 200000)
  --rates <list>             offered rates of the latency runs, records/s (default 2000,20000)
  --rate <r>                 one offered rate: the same as --rates r
  --latency-seconds <s>      length of each latency run (default 20)
  --warmup-seconds <s>       an unmeasured run at the same rate before each latency run, so that the
                             broker's JIT has compiled its request path first (default 10; 0 for none)
  --random                   random valid records instead of the replay set cycled
  --modes <list>             comma-separated subset of: batch-1,default,passthrough,exactly-once,shadow
                             (default: all); passthrough skips scoring, to measure Kafka through
                             node-rdkafka alone; exactly-once is default with --guarantee exactly-once;
                             shadow is default with models/candidate scoring every batch beside it
  --guarantee <g>            at-least-once or exactly-once for every mode (default: each mode's own)
  -X <key=value>             librdkafka property for every client, repeatable`;

/** A processor setting under test. */
interface Mode {
  readonly name: string;
  readonly description: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

const MODES: readonly Mode[] = [
  { name: 'batch-1', description: 'batches of one record (--batch-size 1 --batch-wait-ms 0)',
    args: ['--batch-size', '1', '--batch-wait-ms', '0'] },
  { name: 'default', description: 'default batching (natural batches of up to 500 records)', args: [] },
  { name: 'passthrough', description: 'default batching without scoring (every record scores 0): the Kafka floor',
    args: [], env: { XGB_STREAM_PASSTHROUGH: '1' } },
  { name: 'exactly-once', description: 'default batching, --guarantee exactly-once (transactions every 100 ms)',
    args: ['--guarantee', 'exactly-once', '--instance-id', 'bench'] },
  { name: 'shadow', description: 'default batching with models/candidate as --shadow-model: the cost of shadow scoring',
    args: ['--shadow-model', 'models/candidate/model.ubj'] },
];
/** Run when --modes is not given: passthrough gives the other modes' Kafka floor, exactly-once and shadow their costs. */
const DEFAULT_MODES = MODES;

const STALL_MS = 60_000;

/** A mode's processor flags, with the bench's --guarantee (and an instance id for transactions) when given. */
function modeArgs(mode: Mode, opts: { guarantee?: string }): string[] {
  if (!opts.guarantee) return [...mode.args];
  const own = mode.args.indexOf('--guarantee');
  const args = own >= 0 ? [...mode.args.slice(0, own), ...mode.args.slice(own + 2)] : [...mode.args];
  if (!args.includes('--instance-id')) args.push('--instance-id', 'bench');
  return [...args, '--guarantee', opts.guarantee];
}

interface BenchOptions {
  brokers?: string;
  records: number;
  rates: number[];
  latencySeconds: number;
  warmupSeconds: number;
  random: boolean;
  modes: readonly Mode[];
  kafkaProperties: Record<string, string>;
  /** Applied to every mode when given. */
  guarantee?: Guarantee;
}

const BENCH_FLAGS = {
  help: { type: 'boolean', short: 'h' },
  brokers: { type: 'string' },
  records: { type: 'string' },
  rates: { type: 'string' },
  rate: { type: 'string' },
  'latency-seconds': { type: 'string' },
  'warmup-seconds': { type: 'string' },
  random: { type: 'boolean' },
  modes: { type: 'string' },
  guarantee: { type: 'string' },
  'kafka-property': { type: 'string', short: 'X', multiple: true },
} as const;

/** The bench's command line; 'help' for -h. Throws UsageError naming a bad flag. */
export function parseBenchOptions(argv: readonly string[]): BenchOptions | 'help' {
  const flags = readFlags(argv, BENCH_FLAGS);
  if (flags.help) return 'help';
  if (flags.rate !== undefined && flags.rates !== undefined) throw new UsageError('--rate and --rates exclude each other');
  const positive = { min: 0, aboveMin: true };
  return {
    brokers: flags.brokers ?? (process.env.KAFKA_BROKERS || undefined),
    records: numberFlag('--records', flags.records, 200_000, { min: 1, integer: true }),
    rates: flags.rate !== undefined ? [numberFlag('--rate', flags.rate, 0, positive)]
      : numberListFlag('--rates', flags.rates, [2000, 20000], positive),
    latencySeconds: numberFlag('--latency-seconds', flags['latency-seconds'], 20, positive),
    warmupSeconds: numberFlag('--warmup-seconds', flags['warmup-seconds'], 10, { min: 0 }),
    random: flags.random === true,
    modes: flags.modes === undefined ? DEFAULT_MODES : flags.modes.split(',').map((n) => {
      const m = MODES.find((x) => x.name === n.trim());
      if (!m) throw new UsageError(`invalid --modes '${flags.modes}': unknown mode '${n}', expected ${MODES.map((x) => x.name).join(', ')}`);
      return m;
    }),
    kafkaProperties: kafkaPropertyFlags(flags['kafka-property']),
    guarantee: flags.guarantee === undefined ? undefined : parseGuarantee(flags.guarantee),
  };
}

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const say = (text: string): void => { process.stderr.write(`bench: ${text}\n`); };

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function deleteTopics(brokers: string, topics: DemoTopics, props: Record<string, string>): Promise<void> {
  const admin = AdminClient.create({ 'bootstrap.servers': brokers, ...props });
  try {
    for (const t of [topics.input, topics.suspicious, topics.regular, topics.deadLetter]) {
      await new Promise<void>((resolve) => admin.deleteTopic(t, 30_000, () => resolve()));
    }
  } finally {
    admin.disconnect();
  }
}

/** Waits until `reader` holds `count` messages; gives up when none arrive for STALL_MS. */
async function waitForOutputs(reader: OutputReader, count: number, processor: ProcessorChild,
  label: string, signal: AbortSignal): Promise<void> {
  let last = -1;
  let lastChange = Date.now();
  let lastPrint = 0;
  while (reader.messages.length < count) {
    if (signal.aborted) throw new Error('interrupted');
    const now = Date.now();
    if (reader.messages.length !== last) {
      last = reader.messages.length;
      lastChange = now;
    } else if (now - lastChange > STALL_MS) {
      throw new Error(`${label}: no output for ${STALL_MS / 1000} s at ${reader.messages.length} of ${count}:\n${processor.tail()}`);
    }
    if (!processor.running) throw new Error(`${label}: the processor exited:\n${processor.tail()}`);
    if (now - lastPrint > 5_000) {
      lastPrint = now;
      say(`${label}: ${int(reader.messages.length)}/${int(count)} outputs`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** What is running now, for the signal handler, and the switch that aborts the step in progress. */
interface Running {
  processor?: ProcessorChild;
  reader?: OutputReader;
  readonly abort: AbortController;
}

function checkAborted(running: Running): void {
  if (running.abort.signal.aborted) throw new Error('interrupted');
}

async function throughputRun(brokers: string, mode: Mode, records: readonly ReplayRecord[], opts: BenchOptions,
  running: Running) {
  const topics = await createTopics(brokers, `bench-${mode.name}`, 1, opts.kafkaProperties);
  try {
    say(`${mode.name}: preloading ${int(opts.records)} records into ${topics.input}`);
    const pre = await replay({ brokers, topic: topics.input, records, count: opts.records,
      kafkaProperties: opts.kafkaProperties, signal: running.abort.signal });
    checkAborted(running);
    if (pre.failed > 0) throw new Error(`preload: ${pre.failed} records failed: ${pre.firstError}`);
    say(`${mode.name}: preloaded at ${int(pre.rate)} records/s; starting the processor`);
    running.reader = await OutputReader.start(brokers, [topics.suspicious, topics.regular, topics.deadLetter],
      opts.kafkaProperties);
    running.processor = ProcessorChild.start(brokers, [...topicFlags(topics), '--group-id', `${topics.input}-g`,
      ...modeArgs(mode, opts), ...kafkaArgs(opts)], mode.env);
    await running.processor.waitUntilAssigned(60_000, running.abort.signal);
    const cpuAtStart = running.processor.cpuSeconds();
    await waitForOutputs(running.reader, pre.sent, running.processor, `${mode.name} throughput`, running.abort.signal);
    const cpuSeconds = running.processor.cpuSeconds() - cpuAtStart;
    const exit = await running.processor.stop();
    await running.reader.stop();
    const s = summarise(running.reader.messages, { topics, recordsIn: pre.sent });
    const times = running.reader.messages.map((m) => m.timestamp ?? NaN).filter(Number.isFinite);
    return {
      records: pre.sent, outputs: s.distinctOutputs, duplicates: s.duplicates, missing: s.missing,
      deadLetters: s.recordsOut.deadLetter, recordsPerSecond: s.throughput,
      processorCpuSeconds: cpuSeconds, cpuMicrosPerRecord: (cpuSeconds * 1e6) / pre.sent,
      // A loop, not Math.max(...times): spreading 200,000 arguments overflows the call stack.
      firstToLastMs: times.reduce((a, b) => Math.max(a, b), -Infinity) - times.reduce((a, b) => Math.min(a, b), Infinity),
      processorExit: exit.code,
    };
  } finally {
    await endRun(running, brokers, topics, opts);
  }
}

/** Stops what a run started, on success or failure, and deletes its topics. */
async function endRun(running: Running, brokers: string, topics: DemoTopics, opts: BenchOptions): Promise<void> {
  await running.processor?.stop();
  await running.reader?.stop();
  running.processor = undefined;
  running.reader = undefined;
  await deleteTopics(brokers, topics, opts.kafkaProperties);
}

async function latencyRun(brokers: string, mode: Mode, records: readonly ReplayRecord[], opts: BenchOptions,
  rate: number, running: Running, seconds = opts.latencySeconds) {
  const topics = await createTopics(brokers, `bench-${mode.name}-lat`, 1, opts.kafkaProperties);
  const count = Math.round(rate * seconds);
  try {
    running.processor = ProcessorChild.start(brokers, [...topicFlags(topics), '--group-id', `${topics.input}-g`,
      ...modeArgs(mode, opts), ...kafkaArgs(opts)], mode.env);
    await running.processor.waitUntilAssigned(60_000, running.abort.signal);
    checkAborted(running);
    // Sending starts once the reader reads: its group join and first fetch are not the processor's latency.
    running.reader = await OutputReader.start(brokers, [topics.suspicious, topics.regular, topics.deadLetter],
      opts.kafkaProperties, { waitUntilReading: true });
    say(`${mode.name}: sending ${int(count)} records at ${int(rate)} records/s`);
    // linger.ms 1 on the sending side: its batching delay must not be counted as the processor's.
    const sent = await replay({ brokers, topic: topics.input, records, count, rate,
      kafkaProperties: { 'linger.ms': '1', ...opts.kafkaProperties }, signal: running.abort.signal });
    checkAborted(running);
    if (sent.failed > 0) throw new Error(`latency run: ${sent.failed} records failed: ${sent.firstError}`);
    await waitForOutputs(running.reader, sent.sent, running.processor, `${mode.name} latency`, running.abort.signal);
    const exit = await running.processor.stop();
    await running.reader.stop();
    const s = summarise(running.reader.messages, { topics, recordsIn: sent.sent });
    return {
      offeredRate: rate, achievedSendRate: sent.rate, records: sent.sent, duplicates: s.duplicates,
      missing: s.missing, basis: 'output received by the bench minus the input CreateTime (send time)',
      p50: s.latency.p50, p95: s.latency.p95, p99: s.latency.p99, max: s.latency.max,
      toProduce: { p50: s.latencyToProduce.p50, p95: s.latencyToProduce.p95, p99: s.latencyToProduce.p99 },
      ...latencyShape(running.reader.messages, sent.firstSendMs),
      processorExit: exit.code,
    };
  } finally {
    await endRun(running, brokers, topics, opts);
  }
}

/** Percentile curve and per-second p50/p99 over send time, for the plot. */
function latencyShape(messages: readonly ObservedMessage[], firstSendMs: number) {
  const points: Array<{ sentAt: number; latency: number }> = [];
  for (const m of messages) {
    if (!m.value || m.topic.endsWith('.dlq')) continue;
    const sentAt = Number(decodeScoredRecord(m.value).eventTimestampMs);
    points.push({ sentAt, latency: m.receivedAtMs - sentAt });
  }
  const sorted = Float64Array.from(points.map((p) => p.latency)).sort();
  const ps = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100];
  const curve = ps.map((p) => [p, percentile(sorted, p)]);
  const bySecond = new Map<number, number[]>();
  for (const p of points) {
    const s = Math.floor((p.sentAt - firstSendMs) / 1000);
    let arr = bySecond.get(s);
    if (!arr) bySecond.set(s, (arr = []));
    arr.push(p.latency);
  }
  const timeline = [...bySecond.entries()].sort((a, b) => a[0] - b[0]).map(([s, arr]) => {
    const a = Float64Array.from(arr).sort();
    return [s, percentile(a, 50), percentile(a, 99)];
  });
  return { curve, timeline };
}

interface ModeResult {
  readonly description: string;
  readonly throughput: Awaited<ReturnType<typeof throughputRun>>;
  /** The first rate's run, which the plot draws. */
  readonly latency: Awaited<ReturnType<typeof latencyRun>>;
  readonly latencies: Array<Awaited<ReturnType<typeof latencyRun>>>;
}

function kafkaArgs(opts: BenchOptions): string[] {
  return Object.entries(opts.kafkaProperties).flatMap(([k, v]) => ['-X', `${k}=${v}`]);
}

function machine() {
  const cpus = os.cpus();
  let xgboost = 'unknown';
  try {
    xgboost = loadNative().xgboostVersion();
  } catch { /* reported as unknown */ }
  return {
    cores: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadAverage: os.loadavg(), platform: `${os.platform()} ${os.release()}`, node: process.version,
    librdkafka: librdkafkaVersion, xgboost,
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

async function main(): Promise<number> {
  let parsed: BenchOptions | 'help';
  try {
    parsed = parseBenchOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    say(err.message);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const opts = parsed;
  const replayFile = path.join(ROOT, 'models', 'default', 'replay.ndjson.gz');
  const useRandom = opts.random || !existsSync(replayFile);
  const records = useRandom ? randomRecords(10_000, 10) : readReplayFile(replayFile);
  const source = useRandom ? '10,000 random records, cycled' : `${path.relative(ROOT, replayFile)} (${int(records.length)} records), cycled`;

  // A signal aborts the step in progress; each run's finally stops its processor and reader, and
  // main's finally the broker. A second signal kills at once.
  let broker: Broker | undefined;
  const running: Running = { abort: new AbortController() };
  const onSignal = (signal: NodeJS.Signals, escalate = true): void => {
    if (running.abort.signal.aborted) {
      if (!escalate) return;
      say(`${signal} again: killing the processor`);
      if (running.processor?.running) running.processor.child.kill('SIGKILL');
      void (broker?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
      return;
    }
    say(`${signal}: stopping everything it started`);
    running.abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Output may go to a pipe that closed with the parent; losing it must not stop the clean-up.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  whenParentExits(() => onSignal('SIGTERM', false));

  try {
    broker = await Broker.use(opts.brokers, (b) => { broker = b; });
    const brokers = broker.brokers;
    const startedAt = new Date();
    const results: Record<string, ModeResult> = {};
    for (const mode of opts.modes) {
      const throughput = await throughputRun(brokers, mode, records, opts, running);
      say(`${mode.name}: ${int(throughput.recordsPerSecond)} records/s, `
        + `${throughput.cpuMicrosPerRecord.toFixed(1)} µs of processor CPU per record`);
      const latencies = [];
      for (const rate of opts.rates) {
        if (opts.warmupSeconds > 0) {
          // A freshly started broker JIT-compiles its request path for 10 s or so (its C2 compiler thread
          // takes half a core of the two), and a change of load (the throughput run's large batches, another
          // rate) compiles again: without a warm-up the first seconds measure that, not the processor.
          say(`${mode.name}: ${opts.warmupSeconds} s of warm-up at ${int(rate)} records/s (not measured)`);
          await latencyRun(brokers, mode, records, opts, rate, running, opts.warmupSeconds);
        }
        const latency = await latencyRun(brokers, mode, records, opts, rate, running);
        say(`${mode.name} at ${int(rate)}/s: latency p50 ${latency.p50} ms, p99 ${latency.p99} ms`);
        latencies.push(latency);
      }
      results[mode.name] = { description: mode.description, throughput, latency: latencies[0], latencies };
    }

    const one = results['batch-1'];
    const def = results.default;
    const ratio = one && def ? {
      throughput: def.throughput.recordsPerSecond / one.throughput.recordsPerSecond,
      p50: def.latency.p50 / one.latency.p50,
      p99: def.latency.p99 / one.latency.p99,
    } : undefined;

    const report = { startedAt: startedAt.toISOString(), machine: machine(), brokers, localBroker: broker.owned,
      source, options: { records: opts.records, rates: opts.rates, latencySeconds: opts.latencySeconds,
        warmupSeconds: opts.warmupSeconds }, modes: results, ratio };
    const dir = path.join(ROOT, 'bench-results');
    mkdirSync(dir, { recursive: true });
    const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
    const jsonFile = path.join(dir, `${stamp}.json`);
    const pngFile = path.join(dir, `${stamp}.png`);
    writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);

    const lines = [
      '',
      `xgb-stream end-to-end benchmark, ${report.machine.cores} cores (${report.machine.cpuModel}), node ${process.version}, `
        + `librdkafka ${librdkafkaVersion}, ${broker.owned ? 'local broker started for the run' : `broker ${brokers}`}`,
      `throughput: ${int(opts.records)} preloaded records; latency: ${opts.rates.map(int).join(' and ')} records/s `
        + `offered for ${opts.latencySeconds} s each`,
      '',
      `${'mode'.padEnd(10)}${pad('records/s', 12)}${pad('CPU µs/rec', 12)}${pad('offered/s', 11)}`
        + `${pad('p50 ms', 9)}${pad('p95 ms', 9)}${pad('p99 ms', 9)}${pad('max ms', 9)}`,
    ];
    for (const mode of opts.modes) {
      const r = results[mode.name];
      r.latencies.forEach((l, i) => {
        const saturated = r.throughput.recordsPerSecond < l.offeredRate ? '  (offered rate above its throughput)' : '';
        const head = i === 0
          ? `${mode.name.padEnd(10)}${pad(int(r.throughput.recordsPerSecond), 12)}${pad(r.throughput.cpuMicrosPerRecord.toFixed(1), 12)}`
          : ' '.repeat(34);
        lines.push(`${head}${pad(int(l.offeredRate), 11)}${pad(int(l.p50), 9)}${pad(int(l.p95), 9)}`
          + `${pad(int(l.p99), 9)}${pad(int(l.max), 9)}${saturated}`);
      });
    }
    if (ratio) {
      lines.push('', `default / batch-1: throughput x${ratio.throughput.toFixed(2)}, p50 latency x${ratio.p50.toFixed(2)}, `
        + `p99 latency x${ratio.p99.toFixed(2)}`);
    }
    lines.push('', `latency = output received by the bench minus the input's CreateTime (the send time)`,
      `results: ${path.relative(process.cwd(), jsonFile)}`);
    try {
      execFileSync('bash', [path.join(ROOT, 'scripts', 'python.sh'), path.join(ROOT, 'scripts', 'plot_bench.py'),
        jsonFile, pngFile], { stdio: ['ignore', 'ignore', 'pipe'] });
      lines.push(`plot:    ${path.relative(process.cwd(), pngFile)}`);
    } catch (err) {
      lines.push(`plot:    not drawn: ${((err as { stderr?: Buffer }).stderr ?? '').toString().trim() || (err as Error).message}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } catch (err) {
    if (running.abort.signal.aborted) return 130;
    say(`failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await broker?.stop();
  }
}

if (isMainScript(__filename)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
