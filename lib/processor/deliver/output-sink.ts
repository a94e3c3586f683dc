/**
 * The sink of the main outputs (scored records and dead letters): it only sends and settles. It never
 * re-sends and never moves offsets; it tells its owner which sent batches are delivered and which
 * outputs failed, and the owner decides what that means for the offsets.
 *
 * Acknowledgement is per batch, not per record. The producer reports failed deliveries only
 * (`delivery.report.only.error`): a successful output costs no report on the event loop and no handle
 * kept alive per message. A settle point stands in for the successes: `flush` (at-least-once) or
 * `commitTransaction` (exactly-once) returns only once librdkafka is done with every output handed to
 * it before, so every output sent before the settle point began and not reported as failed was
 * delivered. A failure report names its output by topic, key and value (`dr_msg_cb` carries the
 * value), which the sink matches against the outputs it has not settled yet.
 */
import type { DeliveryReport, LibrdKafkaError, Producer } from 'node-rdkafka';
import { CODES } from 'node-rdkafka';
import type { TrackedBatch } from '../partitions/ledger';
import type { Output } from '../score/output';
import { classifyProducerError } from './producer-errors';

/** One send: outputs of a batch's rows, in order. `rows` maps them back when they are not all of it. */
export interface SentOutputs {
  readonly batch: TrackedBatch;
  readonly outputs: readonly Output[];
  /** The batch row of each output; absent when output i is row i. */
  readonly rows?: readonly number[];
}

/** An output librdkafka gave up on (after its own retries within `message.timeout.ms`). */
export interface FailedOutput {
  readonly sent: SentOutputs;
  readonly index: number;
  readonly error: LibrdKafkaError;
}

/** What a settle point found: sends whose outputs were all delivered, and outputs that failed. */
export interface Settled {
  readonly delivered: SentOutputs[];
  readonly failed: FailedOutput[];
}

/** A send with the failures reported for it so far. */
interface Pending {
  readonly sent: SentOutputs;
  failed: Array<{ index: number; error: LibrdKafkaError }> | undefined;
}

/** librdkafka's ERR__PURGE_QUEUE and ERR__PURGE_INFLIGHT, which node-rdkafka hands over as text alone. */
const PURGED = /^(Local: )?purged (in queue|in flight)$/i;
/** Event-loop turns waited, at most, for failure reports still queued in node-rdkafka after a settle point. */
const MAX_REPORT_TURNS = 100;
/** How long a send waits for room when librdkafka's local queue is full, before looking again. */
const QUEUE_FULL_WAIT_MS = 5;

/**
 * A zero-length Buffer that node-rdkafka writes as an empty value, not as null. node-rdkafka passes a
 * Buffer's data pointer to librdkafka, and a zero-length Buffer of its own has none: librdkafka then
 * writes a null (a tombstone, which deletes the key on a compacted topic). A zero-length view into a
 * larger allocation has a pointer, and so stays empty.
 */
const EMPTY = Buffer.alloc(1).subarray(0, 0);

function nonNullEmpty<T extends Buffer | null | undefined>(bytes: T): T {
  return (bytes && bytes.length === 0 ? EMPTY : bytes) as T;
}

/** Sends main outputs and settles them; see the module comment. */
export class OutputSink {
  private producer!: Producer;
  /** Sends not settled yet, oldest first. */
  private pending: Pending[] = [];
  /** Failure reports seen so far: a settle point waits until they stop coming. */
  private reports = 0;
  private readonly onReport = (err: LibrdKafkaError | null, report: DeliveryReport): void => {
    if (err) this.failure(err, report);
  };

  constructor(producer: Producer) {
    this.attach(producer);
  }

  /** Sends go to `producer` from now on (a new transactional producer after a fence). */
  attach(producer: Producer): void {
    this.producer?.removeListener('delivery-report', this.onReport);
    this.producer = producer;
    producer.on('delivery-report', this.onReport);
  }

  /** Sends not settled yet. */
  get unsettled(): number {
    return this.pending.length;
  }

  /**
   * Hands every output to the producer, in order, waiting only while librdkafka's local queue is full.
   * An output librdkafka refuses at once for good (larger than its `message.max.bytes`) is replaced by
   * `replace` and that is sent instead; a skipped output (nothing fits) is not sent.
   */
  async send(sent: SentOutputs, replace: (output: Output, err: LibrdKafkaError) => Output): Promise<SentOutputs> {
    const outputs = sent.outputs as Output[];
    let replaced: Output[] | undefined;
    for (let i = 0; i < outputs.length; i++) {
      let output = outputs[i];
      for (;;) {
        if (output.skipped !== undefined) break;
        const result = this.produce(output);
        if (result === undefined) break;
        if (result === 'full') {
          this.producer.poll();
          await new Promise((resolve) => setTimeout(resolve, QUEUE_FULL_WAIT_MS));
          continue;
        }
        output = replace(output, result);
        (replaced ??= outputs.slice())[i] = output;
      }
    }
    const final = replaced ? { ...sent, outputs: replaced } : sent;
    this.pending.push({ sent: final, failed: undefined });
    return final;
  }

  /** undefined once queued; 'full' when librdkafka's queue is full; the error when it refuses the record. */
  private produce(output: Output): undefined | 'full' | LibrdKafkaError {
    const value = nonNullEmpty(output.value);
    const key = typeof output.key === 'string' ? output.key : nonNullEmpty(output.key);
    try {
      // No opaque (undefined, not null): node-rdkafka keeps a handle alive for any other value until
      // its delivery report, and successes have none here.
      this.producer.produce(output.topic, null, value, key, null, undefined, output.headers);
      return undefined;
    } catch (err) {
      const e = err as LibrdKafkaError;
      if (e.code === CODES.ERRORS.ERR__QUEUE_FULL) return 'full';
      if (classifyProducerError(e) === 'record') return e;
      throw err;
    }
  }

  /**
   * Waits at `settlePoint` (a flush, or a transaction's commit), then for the failure reports queued
   * behind it, and tells which of the sends made before it began were delivered and which outputs
   * failed. The sends it covers are settled whatever the outcome; when `settlePoint` rejects, nothing is
   * settled and the error is thrown.
   */
  async settle(settlePoint: () => Promise<void>): Promise<Settled> {
    const covered = this.pending.length;
    await settlePoint();
    await this.reportsDrained();
    const settled = this.pending.splice(0, covered);
    const delivered: SentOutputs[] = [];
    const failed: FailedOutput[] = [];
    for (const p of settled) {
      if (!p.failed) {
        delivered.push(p.sent);
        continue;
      }
      for (const f of p.failed) failed.push({ sent: p.sent, index: f.index, error: f.error });
      const bad = new Set(p.failed.map((f) => f.index));
      const good = p.sent.outputs.map((_, i) => i).filter((i) => !bad.has(i));
      if (good.length > 0) {
        delivered.push({
          batch: p.sent.batch,
          outputs: good.map((i) => p.sent.outputs[i]),
          rows: good.map((i) => p.sent.rows?.[i] ?? i),
        });
      }
    }
    return { delivered, failed };
  }

  /** Failures reported so far for sends not settled yet. */
  reportedFailures(): FailedOutput[] {
    const out: FailedOutput[] = [];
    for (const p of this.pending) for (const f of p.failed ?? []) out.push({ sent: p.sent, index: f.index, error: f.error });
    return out;
  }

  /** Waits for the failure reports still queued in node-rdkafka (see {@link settle}). */
  async reportsSettled(): Promise<void> {
    await this.reportsDrained();
  }

  /** Forgets every unsettled send (an aborted transaction: its outputs are never visible). */
  discard(): void {
    this.pending = [];
  }

  /**
   * node-rdkafka hands reports to JavaScript through an async handle, at most 100 per event-loop turn,
   * and the settle point's callback may come before the last of them. Waits one turn, and more while
   * reports keep arriving.
   */
  private async reportsDrained(): Promise<void> {
    for (let turn = 0; turn < MAX_REPORT_TURNS; turn++) {
      const before = this.reports;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.reports === before) return;
    }
  }

  /** Matches a failure report to the unsettled output it is about. */
  private failure(err: LibrdKafkaError, report: DeliveryReport): void {
    this.reports++;
    // An aborted transaction purges its queued outputs, and their reports come after the abort: they
    // are about sends already discarded, and must not be taken for a failure of a later copy.
    if (PURGED.test(err.message)) return;
    for (const p of this.pending) {
      const outputs = p.sent.outputs;
      for (let i = 0; i < outputs.length; i++) {
        if (!sameRecord(outputs[i], report)) continue;
        if (p.failed?.some((f) => f.index === i)) continue;
        (p.failed ??= []).push({ index: i, error: err });
        return;
      }
    }
  }
}

/** Whether a delivery report is about this output: same topic, key bytes and value bytes. */
function sameRecord(output: Output, report: DeliveryReport): boolean {
  if (output.skipped !== undefined || output.topic !== report.topic) return false;
  const key = output.key === null || output.key === undefined ? null
    : typeof output.key === 'string' ? Buffer.from(output.key) : output.key;
  return bytesEqual(key, report.key as Buffer | null | undefined) && bytesEqual(output.value, report.value);
}

function bytesEqual(a: Buffer | null | undefined, b: Buffer | null | undefined): boolean {
  const an = a === null || a === undefined || a.length === 0;
  const bn = b === null || b === undefined || b.length === 0;
  if (an || bn) return an && bn;
  return a!.equals(b!);
}
