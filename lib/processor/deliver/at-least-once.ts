/**
 * The deliver stage: sends each batch's outputs, in batch order, through the {@link OutputSink}, and
 * decides from what the sink settles which input offsets may be committed. The processor talks to it
 * through {@link Delivery}; {@link AtLeastOnceDelivery} is the default mode.
 *
 * At-least-once: outputs are acknowledged per batch. Whenever sends are unsettled, one flush settles
 * every output sent before it began; a partition's offset is then stored (and committed by librdkafka's
 * auto-commit, once a second) over the contiguous run of records whose outputs were delivered. An
 * output librdkafka gave up on is never sent again as it was (librdkafka has retried it within
 * `message.timeout.ms`, and a late copy would land behind later outputs of its partition): one the
 * broker refuses for good becomes a dead letter of its input; any other failure stops the processor
 * with nothing stored past that record, which is scored again after a restart.
 */
import type { LibrdKafkaError, Producer } from 'node-rdkafka';
import { CODES } from 'node-rdkafka';
import type { TrackedBatch } from '../partitions/ledger';
import type { Output, ShadowOutput } from '../score/output';
import { OutputSink, type FailedOutput, type Settled, type SentOutputs } from './output-sink';
import { OutputAccounting, type AccountingContext } from './output-accounting';
import { classifyProducerError } from './producer-errors';
import type { Guarantee, PartitionOwner } from '../partitions/owner';
import { Progress } from '../progress';
import type { ShadowWriter } from './shadow-writer';

/**
 * How long one flush waits for librdkafka to finish with the outputs before looking again: it returns
 * as soon as they are done, so this only bounds a flush while the brokers are unreachable.
 */
const FLUSH_TIMEOUT_MS = 2_000;

/** A delivery error that stops the processor: an output librdkafka could not deliver. */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
}

/**
 * How the processor hands its work to a delivery mode. A delivery mode reports what was acknowledged
 * to the partition owner, and raises its first fatal error there.
 */
export interface Delivery extends Guarantee {
  /**
   * Sends a batch's outputs once they are scored, after every batch sent before it. Resolves when
   * they are all handed to the producer.
   */
  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void>;
  /** At shutdown, after the last send: flush and commit what was delivered. Resolves with whether all was. */
  finish(assigned: readonly number[], deadline: number): Promise<boolean>;
}

/** What the deliver stage needs from the processor. */
export interface DeliveryContext extends AccountingContext {
  readonly producer: Producer;
  readonly owner: PartitionOwner;
  /** Where shadow outputs go, when there is a shadow topic. */
  readonly shadow?: ShadowWriter;
  /** Called after every settle: the fetch loop waits on it. */
  onProgress(): void;
}

/** Default delivery mode; see the module comment. */
export class AtLeastOnceDelivery implements Delivery {
  private readonly sink: OutputSink;
  private readonly accounting: OutputAccounting;
  /** Outputs are sent batch after batch, in consumption order, whatever order predictions finish in. */
  private chain: Promise<void> = Promise.resolve();
  /** The settle loop, while it runs. */
  private settling: Promise<void> | undefined;
  private closing = false;
  /** Batches sent whose outputs are not all handed to the producer yet. */
  private unsent = 0;
  /** Drains waiting for the next settle. */
  private readonly waiting = new Progress();

  constructor(private readonly ctx: DeliveryContext) {
    this.accounting = new OutputAccounting(ctx);
    this.sink = new OutputSink(ctx.producer);
  }

  private get ledger() {
    return this.ctx.owner.ledger;
  }


  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void> {
    this.unsent++;
    const sent = this.chain.then(() => outputs).then((o) => this.sendOutputs({ batch, outputs: o }));
    this.chain = sent.catch(() => undefined).finally(() => {
      this.unsent--;
      this.progress();
    });
    return sent;
  }

  async release(partitions: readonly number[], deadline: number): Promise<void> {
    if (this.closing) return;
    const drained = await this.waiting.until(() => this.ledger.pending(partitions) === 0, deadline, () => this.ctx.owner.halted);
    if (!drained) this.ctx.log.warn('revoked partitions still had undelivered outputs', { partitions });
    this.ctx.owner.commitAcknowledged(partitions);
  }

  async finish(assigned: readonly number[], deadline: number): Promise<boolean> {
    // Bounded like the rest: a batch whose scoring never ends must not hold the shutdown.
    const drained = await this.waiting.until(() => this.unsent === 0 && this.ledger.pending() === 0, deadline, () => this.ctx.owner.halted);
    // The settle loop stops here; the last flush below settles whatever it had not.
    this.closing = true;
    const flushed = this.sink.unsettled === 0 || await this.sink.settle(() => flush(this.ctx.producer, Math.max(1, deadline - Date.now())))
      .then((settled) => {
        this.apply(settled);
        return settled.failed.length === 0;
      }, (err: Error) => {
        this.ctx.log.error('flush failed', { error: err.message });
        return false;
      });
    // Whatever was delivered is stored, also after a failure: the tracker never passes a lost output.
    // Closing the consumer commits it; a commit here that waited for unreachable brokers would hold
    // the shutdown past its deadline.
    this.ctx.owner.storeAll(assigned);
    return drained && flushed && !this.ledger.hasFailure;
  }

  private async sendOutputs(sent: SentOutputs): Promise<void> {
    const final = await this.sink.send(sent, (output, err) => this.accounting.rejected(output, err));
    if (this.ctx.shadow) writeShadows(this.ctx.shadow, final.outputs);
    this.settleSoon();
  }

  /** Starts the settle loop unless it runs: it flushes while anything sent is unsettled. */
  private settleSoon(): void {
    this.settling ??= this.settleLoop().finally(() => { this.settling = undefined; });
  }

  private async settleLoop(): Promise<void> {
    while (this.sink.unsettled > 0 && !this.ctx.owner.halted && !this.closing) {
      let settled: Settled;
      try {
        settled = await this.sink.settle(() => flush(this.ctx.producer, FLUSH_TIMEOUT_MS));
      } catch (err) {
        // Timed out: the brokers are slow or away (the outage is logged elsewhere); flush again.
        if ((err as LibrdKafkaError).code !== CODES.ERRORS.ERR__TIMED_OUT) this.ctx.log.warn('flush failed', { error: err });
        continue;
      }
      if (!this.closing) this.apply(settled);
    }
  }

  /** Marks delivered rows done, handles failed outputs, and stores the offsets that advanced. */
  private apply(settled: Settled): void {
    if (settled.delivered.length === 0 && settled.failed.length === 0) return;
    const now = Date.now();
    for (const s of settled.delivered) {
      const { batch, outputs, rows } = s;
      for (let i = 0; i < outputs.length; i++) {
        this.ledger.delivered(batch, rows ? rows[i] : i);
        this.accounting.delivered(outputs[i], now);
      }
    }
    for (const f of settled.failed) this.failed(f);
    this.storeOffsets();
    this.progress();
  }

  /** A refused output becomes a dead letter, sent now; any other failure stops the processor. */
  private failed(f: FailedOutput): void {
    const output = f.sent.outputs[f.index];
    const row = f.sent.rows?.[f.index] ?? f.index;
    const kind = classifyProducerError(f.error);
    this.ctx.metrics.deliveryFailures.inc();
    const position = this.ledger.positionOf(f.sent.batch, row);
    this.ctx.log.error('delivery failed', {
      topic: output.topic, sourcePartition: position.partition, sourceOffset: position.offset,
      error: f.error.message, code: f.error.code, kind,
    });
    if (kind === 'record' && !this.closing) {
      const replacement = this.accounting.rejected(output, f.error);
      this.sink.send({ batch: f.sent.batch, outputs: [replacement], rows: [row] }, (o, e) => this.accounting.rejected(o, e))
        .then(() => this.settleSoon(), (e) => this.ctx.owner.fatal.raise(e as Error));
      return;
    }
    this.ledger.failed(f.sent.batch, row);
    this.ctx.owner.fatal.raise(new DeliveryError(`could not deliver to ${output.topic} the output of ${this.ctx.inputTopic} `
      + `partition ${position.partition} offset ${position.offset}: ${f.error.message}`));
  }

  private progress(): void {
    this.waiting.signal();
    this.ctx.onProgress();
  }

  private storeOffsets(): void {
    this.ctx.metrics.inFlight.set({}, this.ledger.inFlight);
    if (!this.closing) this.ctx.owner.storeAcknowledged();
  }
}

/** Waits until librdkafka is done with every output handed to `producer` (delivered or failed). */
export function flush(producer: Producer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    producer.flush(timeoutMs, (err) => (err ? reject(err) : resolve()));
  });
}

/** Hands the shadow outputs of a batch's main outputs to the shadow writer. */
export function writeShadows(shadow: ShadowWriter, outputs: readonly Output[]): void {
  let shadows: ShadowOutput[] | undefined;
  for (const o of outputs) if (o.shadow) (shadows ??= []).push(o.shadow);
  if (shadows) shadow.write(shadows);
}
