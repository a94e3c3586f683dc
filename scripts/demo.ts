/**
 * `npm run demo`: runs the whole pipeline once on the trainer's held-out transactions. Starts the
 * local Kafka (unless --brokers or KAFKA_BROKERS names a cluster), creates fresh topics, starts the
 * processor, replays the transactions, reads the outputs back, and prints a summary computed from them.
 * Everything it started is stopped at the end, on an error and on SIGINT or SIGTERM.
 */
import * as path from 'node:path';
import { readReplayFile, replay, ReplayFileError, type ReplayProgress, type ReplaySummary } from '../lib/replay';
import { formatSummary, summarise } from './demo-summary';
import {
  Broker, createTopics, OutputReader, parseGuarantee, ProcessorChild, readModelCardMetrics, ROOT, topicFlags, whenParentExits,
  type Guarantee,
} from './harness';
import { isMainScript, kafkaPropertyFlags, numberFlag, readFlags, UsageError } from './options';

const HELP = `Usage: npm run demo -- [options]

  --brokers <host:port,...>  use this cluster instead of starting the local broker [KAFKA_BROKERS]
  --records <n>              replay only the first n held-out transactions (default: all)
  --rate <r>                 records per second sent; 0 = as fast as possible (default 5000)
  --file <path>              replay set (default models/default/replay.ndjson.gz)
  --model <path>             model the processor loads (default models/default/model.ubj)
  --guarantee <g>            the processor's at-least-once (default) or exactly-once; the reader
                             reads read_committed either way
  -X <key=value>             librdkafka property for every client, repeatable (e.g. security settings)`;

/** No output for this long while records are still missing means the processor is stuck. */
const STALL_MS = 60_000;

interface DemoOptions {
  brokers?: string;
  records?: number;
  rate: number;
  file: string;
  model: string;
  guarantee: Guarantee;
  kafkaProperties: Record<string, string>;
}

const DEMO_FLAGS = {
  help: { type: 'boolean', short: 'h' },
  brokers: { type: 'string' },
  records: { type: 'string' },
  rate: { type: 'string' },
  file: { type: 'string' },
  model: { type: 'string' },
  guarantee: { type: 'string' },
  'kafka-property': { type: 'string', short: 'X', multiple: true },
} as const;

/** The demo's command line; 'help' for -h. Throws UsageError naming a bad flag. */
export function parseDemoOptions(argv: readonly string[]): DemoOptions | 'help' {
  const flags = readFlags(argv, DEMO_FLAGS);
  if (flags.help) return 'help';
  return {
    brokers: flags.brokers ?? (process.env.KAFKA_BROKERS || undefined),
    records: flags.records === undefined ? undefined : numberFlag('--records', flags.records, 0, { min: 1, integer: true }),
    rate: numberFlag('--rate', flags.rate, 5000, { min: 0 }),
    file: path.resolve(flags.file ?? path.join(ROOT, 'models', 'default', 'replay.ndjson.gz')),
    model: path.resolve(flags.model ?? path.join(ROOT, 'models', 'default', 'model.ubj')),
    guarantee: parseGuarantee(flags.guarantee ?? 'at-least-once'),
    kafkaProperties: kafkaPropertyFlags(flags['kafka-property']),
  };
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** One status line: rewritten in place on a terminal, printed every 5 s otherwise. */
class StatusLine {
  private readonly tty = process.stderr.isTTY === true;
  private lastPrinted = 0;
  private drawn = false;
  show(text: string): void {
    if (this.tty) {
      process.stderr.write(`\r${text}\x1b[K`);
      this.drawn = true;
    } else if (Date.now() - this.lastPrinted >= 5_000) {
      this.lastPrinted = Date.now();
      process.stderr.write(`${text}\n`);
    }
  }
  done(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

function say(text: string): void {
  process.stderr.write(`demo: ${text}\n`);
}

async function main(): Promise<number> {
  let options: DemoOptions | 'help';
  try {
    options = parseDemoOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`demo: ${err.message}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const opts = options;
  const startedAt = Date.now();

  let records;
  try {
    records = readReplayFile(opts.file);
  } catch (err) {
    if (err instanceof ReplayFileError) {
      process.stderr.write(`demo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (opts.records !== undefined) records = records.slice(0, opts.records);

  // Everything started so far, stopped in reverse order by cleanup() when main() unwinds, whatever
  // ends the run: a signal only aborts the step in progress.
  let broker: Broker | undefined;
  let processor: ProcessorChild | undefined;
  let reader: OutputReader | undefined;
  let ticker: NodeJS.Timeout | undefined;
  const status = new StatusLine();
  const abort = new AbortController();
  const cleanup = async (): Promise<void> => {
    if (ticker) clearInterval(ticker);
    status.done();
    if (processor?.running) {
      say('stopping the processor');
      const exit = await processor.stop();
      if (exit.killed) say('the processor did not stop within 40 s and was killed');
    }
    await reader?.stop();
    if (broker?.owned) {
      say('stopping the local Kafka broker it started');
      await broker.stop();
    }
  };
  const onSignal = (signal: NodeJS.Signals, escalate = true): void => {
    if (abort.signal.aborted) {
      if (!escalate) return;
      // A second interrupt: do not wait for a graceful stop, but still leave nothing behind.
      say(`${signal} again: killing the processor`);
      if (processor?.running) processor.child.kill('SIGKILL');
      void (broker?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
      return;
    }
    status.done();
    say(`${signal}: stopping everything it started`);
    abort.abort();
  };
  const interrupted = (): boolean => abort.signal.aborted;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Output may go to a pipe that closed with the parent; losing it must not stop the clean-up.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  whenParentExits(() => onSignal('SIGTERM', false));

  try {
    if (opts.brokers) say(`using the cluster at ${opts.brokers}; nothing will be started or stopped there`);
    broker = await Broker.use(opts.brokers, (b) => {
      broker = b;
      say(b.owned ? 'starting the local Kafka broker (scripts/kafka.sh start); it is stopped at the end'
        : 'the local Kafka broker already runs: using it and leaving it running');
    });
    if (interrupted()) return 130;
    const brokers = broker.brokers;
    const kafkaArgs = Object.entries(opts.kafkaProperties).flatMap(([k, v]) => ['-X', `${k}=${v}`]);

    const topics = await createTopics(brokers, 'demo', 1, opts.kafkaProperties);
    say(`topics ${topics.input} -> ${topics.suspicious} | ${topics.regular} | ${topics.deadLetter}`);
    if (interrupted()) return 130;
    processor = ProcessorChild.start(brokers, [...topicFlags(topics), '--group-id', `${topics.input}-scorer`,
      '--model', opts.model, '--guarantee', opts.guarantee, '--instance-id', 'demo', ...kafkaArgs]);
    await processor.waitUntilAssigned(60_000, abort.signal);
    if (interrupted()) return 130;
    reader = await OutputReader.start(brokers, [topics.suspicious, topics.regular, topics.deadLetter], opts.kafkaProperties);
    say(`replaying ${int(records.length)} held-out transactions from ${path.relative(process.cwd(), opts.file)} `
      + `${opts.rate > 0 ? `at ${int(opts.rate)} records/s` : 'as fast as possible'}`);

    let replayProgress: ReplayProgress | undefined;
    const window: Array<{ at: number; out: number }> = [];
    const out = reader;
    ticker = setInterval(() => {
      const now = Date.now();
      window.push({ at: now, out: out.messages.length });
      while (window.length > 2 && now - window[0].at > 1_000) window.shift();
      const rate = window.length > 1
        ? ((window[window.length - 1].out - window[0].out) * 1000) / Math.max(1, now - window[0].at) : 0;
      status.show(`demo: in ${int(replayProgress?.sent ?? 0)}/${int(records.length)}  `
        + `out ${int(out.messages.length)}  ${int(rate)} records/s  ${((now - startedAt) / 1000).toFixed(0)} s`);
    }, 250);

    const sent: ReplaySummary = await replay({
      brokers, topic: topics.input, records, rate: opts.rate, kafkaProperties: opts.kafkaProperties,
      signal: abort.signal, onProgress: (p) => { replayProgress = p; },
    });
    if (interrupted()) return 130;
    if (sent.failed > 0) say(`${int(sent.failed)} records could not be sent: ${sent.firstError}`);

    // Wait for an output per input record; give up only when outputs stop coming.
    let lastCount = -1;
    let lastChange = Date.now();
    while (out.messages.length < sent.sent && !interrupted()) {
      if (out.messages.length !== lastCount) {
        lastCount = out.messages.length;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > STALL_MS) {
        status.done();
        say(`no output for ${STALL_MS / 1000} s with ${int(out.messages.length)} of ${int(sent.sent)}; `
          + `summarising what arrived. Processor log:\n${processor.tail()}`);
        break;
      }
      if (!processor.running) {
        status.done();
        say(`the processor exited early:\n${processor.tail()}`);
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    if (interrupted()) return 130;
    clearInterval(ticker);
    status.done();

    const exit = await processor.stop();
    await reader.stop();
    const summary = summarise(reader.messages, {
      topics, recordsIn: sent.sent,
      modelCard: readModelCardMetrics(path.join(path.dirname(opts.model), 'model-card.json')),
    });
    process.stdout.write(`\n${formatSummary(summary, { elapsedMs: Date.now() - startedAt, replayRate: sent.rate })}\n`);
    if (exit.code !== 0) say(`the processor exited with ${exit.code ?? exit.signal}:\n${processor.tail()}`);
    return summary.missing === 0 && exit.code === 0 ? 0 : 1;
  } catch (err) {
    status.done();
    if (interrupted()) return 130;
    say(`failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

if (isMainScript(__filename)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`demo: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
