/**
 * The processor run inside the test process, for what a child process cannot show: faults injected at
 * the scoring seam, the metrics' values as objects, and the exit status as a resolved promise.
 *
 * FaultyScorer wraps the real Classifier: every score it returns is the model's own. It only fails, or
 * holds, where a test asks it to, so that the processor's fail-closed paths run against real scores.
 */
import type { Classifier } from '../../lib/classifier';
import { parseConfig } from '../../lib/config';
import { createLogger } from '../../lib/log';
import { ProcessorMetrics } from '../../lib/metrics';
import { StreamProcessor, type Scorer } from '../../lib/processor/processor';
import { brokers } from './kafka';

/** A feature value no real row has: a row whose first feature equals it is a marked row. */
export const POISON = 987654.5;
export const HOLD = 876543.5;

/** What to make fail or wait, by batch call (1-based) or by marked row. */
export interface Faults {
  /** predictBatchAsync calls that fail (transient trouble: the retry succeeds). */
  readonly failBatchCalls?: ReadonlySet<number>;
  /** Rows whose first feature is POISON fail in every call, batched or single. */
  readonly poisonRows?: boolean;
  /** A batch holding a row whose first feature is HOLD waits for this promise before it is scored. */
  readonly holdUntil?: Promise<void>;
}

export class FaultyScorer implements Scorer {
  /** predictBatchAsync calls so far, failed ones included. */
  batchCalls = 0;
  /** Single-row predict calls so far (the processor's row-by-row fallback). */
  rowCalls = 0;
  private holding: (() => void) | undefined;
  /** Resolves once a batch with a HOLD row is waiting. */
  readonly held: Promise<void>;

  constructor(private readonly real: Classifier, private readonly faults: Faults) {
    this.held = new Promise((resolve) => { this.holding = resolve; });
  }

  get numFeatures(): number { return this.real.numFeatures; }
  get modelInfo(): Classifier['modelInfo'] { return this.real.modelInfo; }
  attribute(key: string): string | undefined { return this.real.attribute(key); }
  explainBatchAsync: Classifier['explainBatchAsync'] = (rows, nRows, options) =>
    this.real.explainBatchAsync(rows, nRows, options);

  private marked(rows: Float32Array, value: number): boolean {
    for (let i = 0; i < rows.length; i += this.real.numFeatures) if (rows[i] === value) return true;
    return false;
  }

  async predictBatchAsync(rows: Float32Array, nRows: number): Promise<Float32Array> {
    const call = ++this.batchCalls;
    if (this.faults.holdUntil && this.marked(rows, HOLD)) {
      this.holding?.();
      await this.faults.holdUntil;
    }
    if (this.faults.failBatchCalls?.has(call)) throw new Error(`injected failure of batch call ${call}`);
    if (this.faults.poisonRows && this.marked(rows, POISON)) throw new Error('injected failure: a poisoned row');
    return this.real.predictBatchAsync(rows, nRows);
  }

  predict(row: ArrayLike<number>): number {
    this.rowCalls++;
    if (this.faults.poisonRows && row[0] === POISON) throw new Error('injected failure: a poisoned row');
    return this.real.predict(row);
  }
}

/** A processor running in this process, with its log lines as parsed objects. */
export interface InProcessProcessor {
  readonly processor: StreamProcessor;
  readonly metrics: ProcessorMetrics;
  readonly logs: Array<Record<string, unknown>>;
}

/** Starts the processor in this process with the given flags (parsed as the CLI parses them). */
export async function startInProcess(args: readonly string[], scorer: Scorer, bootstrap = brokers()):
  Promise<InProcessProcessor> {
  const parsed = parseConfig(['--brokers', bootstrap, '-X', 'session.timeout.ms=6000',
    '-X', 'heartbeat.interval.ms=500', '--log-level', 'info', ...args], {});
  if (parsed.kind !== 'run') throw new Error(`unexpected ${parsed.kind}`);
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger(parsed.config.logLevel, (line) => { logs.push(JSON.parse(line)); });
  const metrics = new ProcessorMetrics();
  const processor = new StreamProcessor({ config: parsed.config, classifier: scorer, logger, metrics });
  await processor.start();
  return { processor, metrics, logs };
}

/** Resolves once `predicate` holds, polling; rejects after timeoutMs naming what was awaited. */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
