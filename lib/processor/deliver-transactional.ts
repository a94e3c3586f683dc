/**
 * The exactly-once delivery mode (`--guarantee exactly-once`): the outputs of one or more batches and
 * the input offsets they advance to are written in one Kafka transaction, which commits all or nothing.
 * A read_committed reader sees each input's output exactly once, across crashes, broker restarts and
 * rebalances:
 * - a transaction is committed every `--commit-interval-ms`, sooner when it holds `MAX_RECORDS_PER_TRANSACTION`
 *   records, before revoked partitions go, and at shutdown;
 * - the offsets go in with the consumer's group metadata, so a zombie instance (one the group has moved
 *   on from) is fenced by the broker and cannot commit;
 * - an abortable error aborts the transaction and rewinds every assigned partition to its committed
 *   offset: the aborted records are read and scored again;
 * - a fatal error (fenced, unsupported) stops the processor with status 1.
 */
import type { DeliveryReport, LibrdKafkaError, Message } from 'node-rdkafka';
import type { DeliveryContext, Delivery } from './deliver';
import { OffsetTracker, type PartitionOffset, type TrackedBatch } from './offsets';
import type { Output } from './output';
import { Progress } from './progress';
import { InFlightOutput, OutputWriter, classifyProducerError, SHADOW_OUTPUT } from './output-writer';

/** A size bound on a transaction, so that a fast stream commits more often than the interval. */
const MAX_RECORDS_PER_TRANSACTION = 20_000;
/** Bound on each transactional call; librdkafka retries within it. */
const TRANSACTION_TIMEOUT_MS = 30_000;

/** What the exactly-once mode needs beyond the at-least-once one. */
export interface TransactionalContext extends DeliveryContext {
  readonly commitIntervalMs: number;
  /** The producer's transactional.id, for the messages. */
  readonly transactionalId: string;
  /**
   * Moves every assigned partition back to its committed offset and drops what was fetched past it;
   * resolves once fetching may go on.
   */
  rewind(): Promise<void>;
}

/** A fatal transactional error, with what it means for an operator. */
export class TransactionFencedError extends Error {
  override readonly name = 'TransactionFencedError';
}

function call(fn: (cb: (err: LibrdKafkaError | null | undefined) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

/** Exactly-once delivery; see the module comment. */
export class ExactlyOnceDelivery implements Delivery {
  private readonly tracker: OffsetTracker;
  private readonly writer: OutputWriter;
  /** Every transactional step runs on this chain, in order: sends, commits, aborts. */
  private chain: Promise<void> = Promise.resolve();
  private unsent = 0;
  private readonly waiting = new Progress();
  /** Bumped by an abort: batches dispatched before it are dropped, not produced. */
  private epoch = 0;
  private open = false;
  /** The batches in the open transaction, with their outputs (counted once committed). */
  private batches: Array<{ batch: TrackedBatch; outputs: readonly Output[] }> = [];
  private records = 0;
  /** Set by a failed delivery report: the open transaction can only be aborted. */
  private doomed: LibrdKafkaError | undefined;
  /** Inputs whose outputs the broker refused for good: sent as dead letters when they come again. */
  private readonly refused = new Map<string, LibrdKafkaError>();
  /** Commits the open transaction `commitIntervalMs` after it began. */
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly ctx: TransactionalContext) {
    this.tracker = new OffsetTracker(ctx.inputTopic);
    this.writer = new OutputWriter(ctx);
    ctx.producer.on('delivery-report', (err, report) => {
      if (report.opaque === SHADOW_OUTPUT) this.writer.shadowReport(err, report.topic);
      else this.onDelivery(err, report);
    });
  }

  /** Initialises the producer's transactions; fences an older instance with the same transactional.id. */
  async init(): Promise<void> {
    await call((cb) => this.ctx.producer.initTransactions(TRANSACTION_TIMEOUT_MS, cb));
  }

  get inFlight(): number {
    return this.tracker.inFlight;
  }

  track(messages: readonly Message[]): TrackedBatch {
    return this.tracker.add(messages);
  }

  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void> {
    const epoch = this.epoch;
    this.unsent++;
    const sent = this.enqueue(async () => {
      const o = await outputs;
      // Dispatched before an abort: these records are read again from the committed offset.
      if (epoch !== this.epoch || this.stopped) return;
      await this.produceBatch(batch, o);
    });
    void sent.catch(() => undefined).finally(() => {
      this.unsent--;
      this.progress();
    });
    return sent;
  }

  pending(partitions?: readonly number[]): number {
    return this.tracker.pending(partitions);
  }

  async release(partitions: readonly number[], deadline: number): Promise<void> {
    // Batches of these partitions already dispatched go into the transaction first (the chain keeps
    // order), then it commits while the group generation that owns them is still current.
    if (!this.stopped) {
      await this.waiting.until(() => this.unsent === 0, deadline, () => this.ctx.failed());
      await this.enqueue(() => this.commit('rebalance'));
    }
    this.tracker.drop(partitions);
  }

  deliveredUpTo(): Map<number, number> {
    // The committed offsets are exact in this mode: they move with the outputs, in one transaction.
    return new Map();
  }

  async finish(_assigned: readonly number[], deadline: number): Promise<boolean> {
    clearTimeout(this.timer);
    const drained = await this.waiting.until(() => this.unsent === 0, deadline, () => this.ctx.failed());
    if (!this.ctx.failed()) await this.enqueue(() => this.commit('shutdown')).catch(() => undefined);
    this.stopped = true;
    return drained && !this.ctx.failed() && !this.open;
  }

  /** Runs `step` after every step before it; a step's failure stops the processor. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.chain.then(step);
    this.chain = run.catch((err) => this.ctx.fail(err as Error));
    return run;
  }

  private async produceBatch(batch: TrackedBatch, outputs: readonly Output[]): Promise<void> {
    if (!this.open) {
      await call((cb) => this.ctx.producer.beginTransaction(cb));
      this.open = true;
      // Its first records wait at most this long to become visible.
      this.timer = setTimeout(() => { void this.enqueue(() => this.commit('interval')).catch(() => undefined); },
        this.ctx.commitIntervalMs);
    }
    const kept: Output[] = new Array(outputs.length);
    for (let row = 0; row < outputs.length; row++) {
      const refusal = this.refused.get(positionKey(outputs[row]));
      const output = refusal ? this.writer.rejected(outputs[row], refusal) : outputs[row];
      kept[row] = (await this.writer.produce(new InFlightOutput(output, batch, row))).output;
    }
    this.batches.push({ batch, outputs: kept });
    this.records += outputs.length;
    if (this.records >= MAX_RECORDS_PER_TRANSACTION) await this.commit('size');
  }

  /**
   * Commits the open transaction with the offsets after its batches. An abortable failure aborts it and
   * rewinds; a fatal one (fenced) stops the processor.
   */
  private async commit(why: string): Promise<void> {
    if (!this.open || this.stopped) return;
    const offsets = this.offsetsAfter();
    try {
      if (this.doomed) throw this.doomed;
      await call((cb) => this.ctx.producer.sendOffsetsToTransaction(offsets.map((o) => ({ ...o })),
        this.ctx.consumer, TRANSACTION_TIMEOUT_MS, cb));
      await call((cb) => this.ctx.producer.commitTransaction(TRANSACTION_TIMEOUT_MS, cb));
    } catch (err) {
      await this.failed(err as LibrdKafkaError, why);
      return;
    }
    const now = Date.now();
    for (const { batch, outputs } of this.batches) {
      for (let row = 0; row < outputs.length; row++) {
        this.tracker.delivered(batch, row);
        if (outputs[row].skipped === undefined) this.writer.delivered(outputs[row], now);
      }
    }
    this.ctx.log.debug('transaction committed', { why, records: this.records, offsets });
    this.reset();
    this.ctx.metrics.inFlight.set({}, this.tracker.inFlight);
    this.progress();
  }

  /** What to do with a failed transactional call: fatal errors stop, the rest abort and rewind. */
  private async failed(err: LibrdKafkaError, why: string): Promise<void> {
    if (err.isFatal || classifyProducerError(err) === 'fatal') {
      this.reset();
      throw fenced(this.ctx.transactionalId, `can no longer commit (${err.message})`);
    }
    this.ctx.log.warn('transaction aborted; rewinding to the committed offsets', {
      why, records: this.records, error: err.message, code: err.code,
    });
    this.ctx.metrics.deliveryFailures.inc();
    try {
      await call((cb) => this.ctx.producer.abortTransaction(TRANSACTION_TIMEOUT_MS, cb));
    } catch (abortErr) {
      const e = abortErr as LibrdKafkaError;
      this.reset();
      throw fenced(this.ctx.transactionalId, `could not abort its transaction (${e.message})`);
    }
    this.epoch++;
    this.reset();
    // Everything fetched so far is read again after the rewind, and tracked afresh then.
    this.tracker.dropAll();
    await this.ctx.rewind();
    this.progress();
  }

  private reset(): void {
    clearTimeout(this.timer);
    this.open = false;
    this.batches = [];
    this.records = 0;
    this.doomed = undefined;
  }

  /** Per partition, the offset after the last record of the open transaction. */
  private offsetsAfter(): PartitionOffset[] {
    const after = new Map<number, number>();
    for (const { batch } of this.batches) {
      for (const [partition, offset] of this.tracker.endOffsets(batch)) {
        if (offset > (after.get(partition) ?? -1)) after.set(partition, offset);
      }
    }
    return [...after].map(([partition, offset]) => ({ topic: this.ctx.inputTopic, partition, offset }));
  }

  private onDelivery(err: LibrdKafkaError | null, report: DeliveryReport): void {
    if (!err) return;
    const item = report.opaque as InFlightOutput;
    const kind = classifyProducerError(err);
    this.ctx.log.error('delivery failed', {
      topic: item.output.topic, sourcePartition: item.output.source.partition, sourceOffset: item.output.source.offset,
      error: err.message, kind,
    });
    // The transaction cannot commit with a lost output; a refused one is a dead letter next time.
    if (kind === 'record') this.refused.set(positionKey(item.output), err);
    this.doomed ??= err;
  }

  private progress(): void {
    this.waiting.signal();
    this.ctx.onProgress();
  }
}

/** The fatal error's message: what happened, what it means for the outputs, and what to do. */
function fenced(transactionalId: string, what: string): TransactionFencedError {
  return new TransactionFencedError(`the transactional producer '${transactionalId}' ${what}. `
    + 'The transaction coordinator has fenced it: another instance with the same transactional.id started, '
    + 'or a broker restart moved the coordinator on. Nothing of the open transaction is visible to '
    + 'read_committed readers. Restart this instance: it resumes from the committed offsets. If two running '
    + 'instances share an id, give each its own --instance-id');
}

function positionKey(output: Output): string {
  return `${output.source.partition}/${output.source.offset}`;
}
