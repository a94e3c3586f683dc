/**
 * The deliver stage: produces each batch's outputs, in batch order, and decides from the delivery
 * reports which input offsets may be committed. The processor talks to it through {@link Delivery};
 * {@link AtLeastOnceDelivery} is the default mode.
 *
 * At-least-once: a partition's offset is stored (and later committed by librdkafka's auto-commit) only
 * once the output of every record before it has a successful delivery report.
 */
import type { DeliveryReport, KafkaConsumer, LibrdKafkaError, Message } from 'node-rdkafka';
import { OffsetTracker, type PartitionOffset, type TrackedBatch } from './offsets';
import type { Output } from './output';
import { Progress } from './progress';
import { InFlightOutput, OutputWriter, classifyProducerError, type WriterContext, SHADOW_OUTPUT } from './output-writer';

/** Attempts to deliver one output before the processor stops without storing past it. */
const DELIVERY_ATTEMPTS = 3;

/** How the processor hands its work to a delivery mode. */
export interface Delivery {
  /** Records fetched and not yet delivered, across all partitions. */
  readonly inFlight: number;
  /** Registers a fetched batch before it is scored: from now on its records count as in flight. */
  track(messages: readonly Message[]): TrackedBatch;
  /**
   * Produces a batch's outputs once they are scored, after every batch sent before it. Resolves when
   * they are all handed to the producer; rejects on an error that must stop the processor.
   */
  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void>;
  /** Records of the given partitions (all when omitted) whose outputs are not delivered yet. */
  pending(partitions?: readonly number[]): number;
  /** Before revoked partitions go: their outputs delivered (or the deadline passed), their offsets committed. */
  release(partitions: readonly number[], deadline: number): Promise<void>;
  /**
   * For partitions assigned again: the offset after the last record whose output this instance
   * delivered, kept across the rebalance even when its commit failed. Partitions never held are absent.
   */
  deliveredUpTo(partitions: readonly number[]): Map<number, number>;
  /** At shutdown, after the last send: flush the producer and commit what was delivered. Resolves with whether all was. */
  finish(assigned: readonly number[], deadline: number): Promise<boolean>;
}

/** What the deliver stage needs from the processor. */
export interface DeliveryContext extends WriterContext {
  readonly consumer: KafkaConsumer;
  /** Partitions currently assigned: only theirs are stored. */
  assignedPartitions(): readonly number[];
  /** Called after every delivery report: the fetch loop and the drains wait on it. */
  onProgress(): void;
  /** Stops the processor with a fatal error. */
  fail(err: Error): void;
  /** Whether the processor is stopping after a fatal error: waiting for deliveries is then pointless. */
  failed(): boolean;
}

/** Default delivery mode; see the module comment. */
export class AtLeastOnceDelivery implements Delivery {
  private readonly tracker: OffsetTracker;
  /** Outputs are produced batch after batch, in consumption order, whatever order predictions finish in. */
  private chain: Promise<void> = Promise.resolve();
  private storeScheduled = false;
  private closing = false;
  /** Per partition, the offset after the last record whose output was delivered: survives revocations. */
  private readonly delivered = new Map<number, number>();
  /** Batches sent whose outputs are not all handed to the producer yet. */
  private unsent = 0;
  /** Drains waiting for the next delivery report. */
  private readonly waiting = new Progress();
  private readonly writer: OutputWriter;

  constructor(private readonly ctx: DeliveryContext) {
    this.tracker = new OffsetTracker(ctx.inputTopic);
    this.writer = new OutputWriter(ctx);
    ctx.producer.on('delivery-report', (err, report) => {
      if (report.opaque === SHADOW_OUTPUT) this.writer.shadowReport(err, report.topic);
      else this.onDelivery(err, report);
    });
  }

  get inFlight(): number {
    return this.tracker.inFlight;
  }

  track(messages: readonly Message[]): TrackedBatch {
    return this.tracker.add(messages);
  }

  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void> {
    this.unsent++;
    const sent = this.chain.then(() => outputs).then((o) => this.produceAll(batch, o));
    this.chain = sent.catch(() => undefined).finally(() => {
      this.unsent--;
      this.progress();
    });
    return sent;
  }

  pending(partitions?: readonly number[]): number {
    return this.tracker.pending(partitions);
  }

  async release(partitions: readonly number[], deadline: number): Promise<void> {
    if (!this.closing) {
      const drained = await this.waiting.until(() => this.tracker.pending(partitions) === 0, deadline, () => this.ctx.failed());
      if (!drained) this.ctx.log.warn('revoked partitions still had undelivered outputs', { partitions });
      const offsets = this.tracker.takeStorable(partitions, true);
      for (const o of offsets) this.delivered.set(o.partition, Math.max(o.offset, this.delivered.get(o.partition) ?? -1));
      this.commit(offsets);
    }
    this.tracker.drop(partitions);
  }

  deliveredUpTo(partitions: readonly number[]): Map<number, number> {
    const out = new Map<number, number>();
    for (const p of partitions) {
      const offset = this.delivered.get(p);
      if (offset !== undefined) out.set(p, offset);
    }
    return out;
  }

  async finish(assigned: readonly number[], deadline: number): Promise<boolean> {
    // Bounded like the rest: a batch whose scoring never ends must not hold the shutdown.
    const drained = await this.waiting.until(() => this.unsent === 0 && this.tracker.pending() === 0, deadline, () => this.ctx.failed());
    const flushed = await new Promise<boolean>((resolve) => {
      this.ctx.producer.flush(Math.max(1, deadline - Date.now()), (err) => {
        if (err) this.ctx.log.error('flush failed', { error: err.message });
        resolve(!err);
      });
    });
    // Whatever was delivered is committed, also after a failure: the tracker never passes a lost output.
    this.commit(this.tracker.takeStorable(assigned, true));
    this.closing = true;
    return drained && flushed && !this.tracker.hasFailure;
  }

  /** Hands a batch's outputs to the producer in order; awaits only when librdkafka's queue is full. */
  private async produceAll(batch: TrackedBatch, outputs: readonly Output[]): Promise<void> {
    for (let row = 0; row < outputs.length; row++) {
      await this.produceItem(new InFlightOutput(outputs[row], batch, row));
    }
  }

  private async produceItem(item: InFlightOutput): Promise<void> {
    const produced = await this.writer.produce(item);
    if (produced.output.skipped === undefined) return;
    // No output at all: the record is done, and its offset may pass.
    this.tracker.delivered(produced.batch, produced.row);
    this.scheduleStore();
    this.progress();
  }

  private onDelivery(err: LibrdKafkaError | null, report: DeliveryReport): void {
    const item = report.opaque as InFlightOutput;
    const { output } = item;
    if (err) {
      this.ctx.metrics.deliveryFailures.inc();
      const position = this.tracker.positionOf(item.batch, item.row);
      const kind = classifyProducerError(err);
      this.ctx.log.error('delivery failed', {
        topic: output.topic, sourcePartition: position.partition, sourceOffset: position.offset,
        attempt: item.attempt, error: err.message, code: err.code, kind,
      });
      if (kind === 'record' && !this.closing) {
        const replacement = new InFlightOutput(this.writer.rejected(output, err), item.batch, item.row);
        this.produceItem(replacement).catch((e) => this.ctx.fail(e as Error));
      } else if (kind === 'transient' && item.attempt < DELIVERY_ATTEMPTS && !this.closing) {
        this.produceItem(item).catch((e) => this.ctx.fail(e as Error));
      } else {
        this.tracker.failed(item.batch, item.row);
        this.ctx.fail(new Error(`could not deliver to ${output.topic} the output of ${this.ctx.inputTopic} `
          + `partition ${position.partition} offset ${position.offset}: ${err.message}`));
      }
      this.progress();
      return;
    }
    this.tracker.delivered(item.batch, item.row);
    this.writer.delivered(output, Date.now());
    this.scheduleStore();
    this.progress();
  }

  private progress(): void {
    this.waiting.signal();
    this.ctx.onProgress();
  }

  /** Stores advanced offsets once per turn of the event loop rather than once per delivery report. */
  private scheduleStore(): void {
    if (this.storeScheduled) return;
    this.storeScheduled = true;
    setImmediate(() => {
      this.storeScheduled = false;
      this.ctx.metrics.inFlight.set({}, this.tracker.inFlight);
      if (this.closing) return;
      const offsets = this.tracker.takeStorable(this.ctx.assignedPartitions());
      if (offsets.length === 0) return;
      try {
        this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      } catch (err) {
        this.ctx.log.warn('could not store offsets', { offsets, error: err });
      }
    });
  }

  private commit(offsets: PartitionOffset[]): void {
    if (offsets.length === 0) return;
    try {
      this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      this.ctx.consumer.commitSync(offsets.map((o) => ({ ...o })));
      this.ctx.log.info('offsets committed', { offsets });
    } catch (err) {
      this.ctx.log.warn('commit failed', { offsets, error: err });
    }
  }
}
