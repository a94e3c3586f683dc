/**
 * The exactly-once delivery mode (`--guarantee exactly-once`): the outputs of one or more batches and
 * the input offsets they advance to are written in one Kafka transaction, which commits all or nothing.
 * A read_committed reader sees each input's output exactly once, across crashes, broker restarts and
 * rebalances:
 * - a transaction is committed every `--commit-interval-ms`, sooner when it holds `MAX_RECORDS_PER_TRANSACTION`
 *   records, before revoked partitions go, and at shutdown; its commit is the batch acknowledgement
 *   (librdkafka flushes the transaction's outputs first, and refuses to commit if any failed);
 * - the offsets go in with the consumer's group metadata, so a zombie instance (one the group has moved
 *   on from) is fenced by the broker and cannot commit;
 * - an abortable error aborts the transaction and rewinds every assigned partition to its committed
 *   offset: the aborted records are read and scored again; an input whose output the broker refused
 *   becomes a dead letter then;
 * - a fenced producer is replaced in place by a new one with the same transactional.id, and the
 *   partitions rewind to the committed offsets. A broker restart does this: the coordinator aborts a
 *   transaction that timed out while it was away and bumps the producer's epoch. Two live instances with
 *   one id fence each other over and over: after `MAX_RENEWALS` in `RENEWAL_WINDOW_MS` the processor
 *   stops, naming that cause;
 * - after every abort and every replaced producer, one more transaction, always aborted, seals every
 *   output partition before anything is read again (see {@link ExactlyOnceDelivery.seal});
 * - an authorization failure, or any other fatal error, stops the processor with status 1.
 */
import { CODES, type KafkaConsumer, type LibrdKafkaError, type Producer } from 'node-rdkafka';
import type { DeliveryContext, Delivery } from './at-least-once';
import { writeShadows } from './at-least-once';
import type { TrackedBatch } from '../partitions/ledger';
import type { Output } from '../score/output';
import { OutputSink, type SentOutputs } from './output-sink';
import { OutputAccounting } from './output-accounting';
import { classifyProducerError } from './producer-errors';
import { Progress } from '../progress';

/** A size bound on a transaction, so that a fast stream commits more often than the interval. */
const MAX_RECORDS_PER_TRANSACTION = 20_000;
/**
 * Bound on each transactional call but the first; librdkafka retries within it. Short, because a call
 * runs on a thread of libuv's pool that the process waits for when it exits: with the brokers away, a
 * stop waits at most this long for a call in flight. A call that times out is retried (an abort) or
 * aborts the transaction (a commit).
 */
const TRANSACTION_TIMEOUT_MS = 5_000;
/** Bound on initTransactions, which waits for a coordinator to fence the previous epoch. */
const INIT_TIMEOUT_MS = 30_000;
/**
 * How long a fence is looked at before the producer is replaced: longer than the consumer's heartbeat
 * (3 s by default), so that a real zombie under static membership learns from its consumer that it was
 * replaced (a fatal FENCED_INSTANCE_ID) and stops, rather than fence its replacement in turn.
 */
const RENEW_DELAY_MS = 4_000;
/** Fenced producers replaced within {@link RENEWAL_WINDOW_MS} before the processor gives up. */
const MAX_RENEWALS = 3;
const RENEWAL_WINDOW_MS = 60_000;

/**
 * The value and header of the records of the sealing transaction ({@link ExactlyOnceDelivery.seal}),
 * which is always aborted: only a read_uncommitted reader sees them, beside the outputs of every other
 * aborted transaction.
 */
const SEAL_VALUE = Buffer.from('xgb-stream seal');
const SEAL_HEADER = 'xgb.seal';

/** How long a seal waits for the last stable offsets to move past its abort before it seals again. */
const SEAL_CHECK_MS = 12_000;
const SEAL_POLL_MS = 200;
/** Seals tried before the processor goes on regardless: another producer's transaction may be what stays open. */
const MAX_SEAL_ATTEMPTS = 5;

interface Toppar {
  readonly topic: string;
  readonly partition: number;
}

function key(p: Toppar): string {
  return `${p.topic}/${p.partition}`;
}

/** As a log line names a partition. */
function partitionName(p: Toppar): string {
  return `${p.topic}[${p.partition}]`;
}

/**
 * The last stable offset of each partition: the end offset a read_committed reader is given, which is
 * what the consumer (read_committed, as exactly-once requires) asks for. A partition whose offset
 * cannot be read now is left out.
 */
async function stableOffsets(consumer: KafkaConsumer, partitions: readonly Toppar[], timeoutMs: number): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  await Promise.all(partitions.map((p) => new Promise<void>((resolve) => {
    consumer.queryWatermarkOffsets(p.topic, p.partition, timeoutMs, (err, offsets) => {
      if (!err) found.set(key(p), offsets.highOffset);
      resolve();
    });
  })));
  return found;
}

/** The partition ids of `topic`, from the producer's metadata. */
function partitionsOf(producer: Producer, topic: string, timeoutMs: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    producer.getMetadata({ topic, timeout: timeoutMs }, (err, metadata) => {
      if (err) {
        reject(err);
        return;
      }
      const found = metadata.topics.find((t) => t.name === topic);
      if (!found || found.partitions.length === 0) reject(new TransactionError(`output topic ${topic} has no partitions`));
      else resolve(found.partitions.map((p) => p.id));
    });
  });
}

/** What the exactly-once mode needs beyond the at-least-once one. */
export interface TransactionalContext extends DeliveryContext {
  readonly consumer: KafkaConsumer;
  readonly commitIntervalMs: number;
  /** The producer's transactional.id, for the messages. */
  readonly transactionalId: string;
  /** Closes the fenced producer and makes a new one with the same transactional.id, its transactions initialised. */
  renewProducer(): Promise<Producer>;
}

/** A transactional error that stops the processor, named for what it is. */
export class TransactionError extends Error {
  override readonly name = 'TransactionError';
}

function call(fn: (cb: (err: LibrdKafkaError | null | undefined) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

/** Initialises a transactional producer's transactions; fences an older epoch of the same transactional.id. */
export function initTransactions(producer: Producer): Promise<void> {
  return call((cb) => producer.initTransactions(INIT_TIMEOUT_MS, cb));
}

/** Exactly-once delivery; see the module comment. */
export class ExactlyOnceDelivery implements Delivery {
  private readonly accounting: OutputAccounting;
  private readonly sink: OutputSink;
  private producer: Producer;
  /** Every transactional step runs on this chain, in order: sends, commits, aborts. */
  private chain: Promise<void> = Promise.resolve();
  private unsent = 0;
  private readonly waiting = new Progress();
  /** Bumped by an abort and again once its rewind is done: batches dispatched before are dropped, not produced. */
  private epoch = 0;
  private open = false;
  /** The sends of the open transaction (counted once committed). */
  private sent: SentOutputs[] = [];
  private records = 0;
  /** Inputs whose outputs the broker refused for good: sent as dead letters when they come again. */
  private readonly refused = new Map<string, LibrdKafkaError>();
  /** Commits the open transaction `commitIntervalMs` after it began. */
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Set once the shutdown began: nothing is retried any more, and calls end by the deadline. */
  private finishing = false;
  private deadline = Infinity;
  /** When fenced producers were replaced, within the last window. */
  private renewals: number[] = [];
  /** Whether the group's offsets were sealed since the start; see {@link assigned}. */
  private groupOffsetsSealed = false;

  constructor(private readonly ctx: TransactionalContext) {
    this.accounting = new OutputAccounting(ctx);
    this.producer = ctx.producer;
    this.sink = new OutputSink(ctx.producer);
  }

  private get ledger() {
    return this.ctx.owner.ledger;
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

  async release(_partitions: readonly number[], deadline: number): Promise<void> {
    // Batches of these partitions already dispatched go into the transaction first (the chain keeps
    // order), then it commits while the group generation that owns them is still current.
    if (this.stopped) return;
    await this.waiting.until(() => this.unsent === 0, deadline, () => this.ctx.owner.halted);
    await this.enqueue(() => this.commit('rebalance'));
  }

  /**
   * On the first assignment after start, seals the group's partition of `__consumer_offsets` as
   * {@link seal} seals the output partitions. The seal at start cannot reach it: only a member of the
   * group may send offsets to a transaction. An offset commit that an earlier run of this instance
   * left pending there (its ABORT marker skipped by a coordinator that had just restarted) makes every
   * look-up of the committed offsets answer "unstable", and the consumer never starts fetching: seen
   * after a broker restart, the processor assigned its partitions and then read nothing for minutes.
   */
  assigned(partitions: readonly number[]): void {
    if (this.groupOffsetsSealed || partitions.length === 0) return;
    this.groupOffsetsSealed = true;
    void this.enqueue(() => this.sealGroupOffsets(partitions[0]));
  }

  /** One transaction that sends an offset of `partition` and is aborted: its marker ends what was pending. */
  private async sealGroupOffsets(partition: number): Promise<void> {
    if (this.stopped || this.finishing || this.ctx.owner.halted) return;
    try {
      await this.retrying('seal the group offsets', (cb) => this.producer.beginTransaction(cb));
      // Never committed, so any offset does.
      await this.retrying('seal the group offsets', (cb) => this.producer.sendOffsetsToTransaction(
        [{ topic: this.ctx.inputTopic, partition, offset: 0 }], this.ctx.consumer, this.callTimeout(), cb));
      await this.retrying('abort the sealing transaction', (cb) => this.producer.abortTransaction(this.callTimeout(), cb));
      this.ctx.log.info('group offsets sealed', { partition });
    } catch (err) {
      // Best effort: the next assignment tries again. A transaction left open is aborted here; a
      // fenced producer is found, and replaced, by the next transaction's begin.
      this.groupOffsetsSealed = false;
      this.ctx.log.warn('could not seal the group offsets', { partition, error: (err as Error).message });
      await call((cb) => this.producer.abortTransaction(this.callTimeout(), cb)).catch(() => undefined);
    }
  }

  async finish(_assigned: readonly number[], deadline: number): Promise<boolean> {
    clearTimeout(this.timer);
    this.finishing = true;
    this.deadline = deadline;
    const drained = await this.waiting.until(() => this.unsent === 0, deadline, () => this.ctx.owner.halted);
    if (!this.ctx.owner.halted) {
      // The last commit is bounded by the shutdown deadline too: with the brokers away it would wait
      // out the transactional timeout.
      const left = Math.max(1, deadline - Date.now());
      const committed = this.enqueue(() => this.commit('shutdown'));
      await Promise.race([committed.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, left).unref())]);
    }
    const clean = drained && !this.ctx.owner.halted && !this.open;
    this.stopped = true;
    return clean;
  }

  /** Runs `step` after every step before it; a step's failure stops the processor. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.chain.then(step);
    this.chain = run.catch((err) => this.ctx.owner.fatal.raise(err as Error));
    return run;
  }

  private async produceBatch(batch: TrackedBatch, outputs: readonly Output[]): Promise<void> {
    if (!this.open) {
      try {
        await call((cb) => this.producer.beginTransaction(cb));
      } catch (err) {
        await this.failed(err as LibrdKafkaError, 'begin');
        return;
      }
      this.open = true;
      // Its first records wait at most this long to become visible.
      this.timer = setTimeout(() => { void this.enqueue(() => this.commit('interval')).catch(() => undefined); },
        this.ctx.commitIntervalMs);
    }
    let kept = outputs;
    if (this.refused.size > 0) {
      kept = outputs.map((o) => {
        const refusal = this.refused.get(positionKey(o));
        return refusal ? this.accounting.rejected(o, refusal) : o;
      });
    }
    const sent = await this.sink.send({ batch, outputs: kept }, (o, e) => this.accounting.rejected(o, e));
    if (this.ctx.shadow) writeShadows(this.ctx.shadow, sent.outputs);
    this.sent.push(sent);
    this.records += outputs.length;
    if (this.records >= MAX_RECORDS_PER_TRANSACTION) await this.commit('size');
  }

  /**
   * Commits the open transaction with the offsets after its sends. An abortable failure aborts it and
   * rewinds; a fenced producer is replaced; any other fatal error stops the processor.
   */
  private async commit(why: string): Promise<void> {
    if (!this.open || this.stopped) return;
    const offsets = this.ctx.owner.offsetsAfter(this.sent.map((s) => s.batch));
    try {
      await this.sink.settle(async () => {
        await this.sink.reportsSettled();
        const failure = this.sink.reportedFailures()[0];
        // The transaction cannot commit with a lost output: abort at once rather than ask.
        if (failure) throw failure.error;
        await this.retrying('send the offsets to the transaction', (cb) => this.producer.sendOffsetsToTransaction(
          offsets.map((o) => ({ ...o })), this.ctx.consumer, this.callTimeout(), cb));
        await this.retrying('commit the transaction', (cb) => this.producer.commitTransaction(this.callTimeout(), cb));
      });
    } catch (err) {
      await this.failed(err as LibrdKafkaError, why);
      return;
    }
    const now = Date.now();
    for (const { batch, outputs } of this.sent) {
      for (let row = 0; row < outputs.length; row++) {
        this.ledger.delivered(batch, row);
        this.accounting.delivered(outputs[row], now);
      }
    }
    this.ctx.owner.committedInTransaction(offsets);
    this.ctx.log.debug('transaction committed', { why, records: this.records, offsets });
    this.reset();
    this.ctx.metrics.inFlight.set({}, this.ledger.inFlight);
    this.progress();
  }

  /** What to do with a failed transactional call; see the module comment. */
  private async failed(err: LibrdKafkaError, why: string): Promise<void> {
    // Outputs the broker refused for good: their inputs become dead letters when read again.
    await this.sink.reportsSettled();
    for (const f of this.sink.reportedFailures()) {
      const output = f.sent.outputs[f.index];
      const kind = classifyProducerError(f.error);
      this.ctx.metrics.deliveryFailures.inc();
      this.ctx.log.error('delivery failed', {
        topic: output.topic, sourcePartition: output.source.partition, sourceOffset: output.source.offset,
        error: f.error.message, code: f.error.code, kind,
      });
      if (kind === 'record') this.refused.set(positionKey(output), f.error);
    }
    this.ctx.metrics.commitFailures.inc();
    const kind = classifyProducerError(err);
    if (kind === 'unauthorized') {
      this.reset();
      throw new TransactionError(`the transactional producer '${this.ctx.transactionalId}' is not authorized `
        + `(${err.message}): the cluster's ACLs must allow it to write the output topics and to use its `
        + 'transactional.id. Nothing of the open transaction is visible to read_committed readers');
    }
    if (kind === 'fenced' || err.isFatal) {
      await this.renew(err, why);
      return;
    }
    if (this.finishing) {
      // Stopping: an abort would only make the exit wait. The coordinator aborts the transaction when
      // it times out, or when this instance starts again; its records are read again then.
      this.reset();
      return;
    }
    this.ctx.log.warn('transaction aborted; rewinding to the committed offsets', {
      why, records: this.records, error: err.message, code: err.code,
    });
    for (let attempt = 1; ; attempt++) {
      try {
        await call((cb) => this.producer.abortTransaction(TRANSACTION_TIMEOUT_MS, cb));
        break;
      } catch (abortErr) {
        const e = abortErr as LibrdKafkaError;
        if (classifyProducerError(e) === 'fenced' || e.isFatal) {
          await this.renew(e, why);
          return;
        }
        // The coordinator away (a broker restart): the abort is retried until it answers or the stop.
        if ((e.code === CODES.ERRORS.ERR__TIMED_OUT || e.isRetriable) && !this.ctx.owner.halted && !this.finishing) {
          if (attempt === 1) this.ctx.log.warn('abort not answered yet; retrying', { error: e.message });
          continue;
        }
        this.reset();
        throw new TransactionError(`the transactional producer '${this.ctx.transactionalId}' could not abort `
          + `its transaction (${e.message})`);
      }
    }
    await this.restartFromCommitted();
  }

  /**
   * Replaces a fenced (or otherwise dead) producer with a new one under the same transactional.id and
   * resumes from the committed offsets, unless this keeps happening: then another live instance has
   * the same id.
   */
  private async renew(err: LibrdKafkaError, why: string): Promise<void> {
    const now = Date.now();
    this.renewals = this.renewals.filter((t) => now - t < RENEWAL_WINDOW_MS);
    if (this.renewals.length >= MAX_RENEWALS) {
      this.reset();
      throw new TransactionError(`the transactional producer '${this.ctx.transactionalId}' was fenced `
        + `${MAX_RENEWALS + 1} times within ${RENEWAL_WINDOW_MS / 1000} s (last: ${err.message}): another running `
        + 'instance uses the same transactional.id. Give each instance its own --instance-id');
    }
    this.renewals.push(now);
    this.ctx.log.warn('transactional producer fenced; replacing it and resuming from the committed offsets', {
      why, records: this.records, error: err.message, code: err.code, transactionalId: this.ctx.transactionalId,
    });
    this.reset();
    this.sink.discard();
    // Fetching goes on meanwhile, dropping what it reads, so that a fence of the consumer is seen.
    this.ctx.owner.expectRewind();
    this.progress();
    await Promise.race([new Promise((resolve) => setTimeout(resolve, RENEW_DELAY_MS)), this.ctx.owner.fatal.raised]);
    // The consumer was fenced meanwhile: this instance is the zombie, and it stops.
    if (this.ctx.owner.halted) return;
    this.producer = await this.ctx.renewProducer();
    this.sink.attach(this.producer);
    this.ctx.log.info('transactional producer replaced', { transactionalId: this.ctx.transactionalId });
    await this.restartFromCommitted();
  }

  /** After an abort: everything fetched so far is read again after the rewind, and tracked afresh then. */
  private async restartFromCommitted(): Promise<void> {
    this.epoch++;
    this.reset();
    this.sink.discard();
    try {
      await this.seal();
    } catch (err) {
      const e = err as LibrdKafkaError;
      // Fenced again (the coordinator still settling after a restart): replaced and sealed anew, within
      // the renewals' bound.
      if (classifyProducerError(e) === 'fenced' || e.isFatal) {
        await this.renew(e, 'seal');
        return;
      }
      throw new TransactionError(`the transactional producer '${this.ctx.transactionalId}' could not seal the output `
        + `partitions after an aborted transaction (${e.message})`);
    }
    await this.ctx.owner.rewind();
    // Batches dispatched while the seal ran were fetched before the rewind, past the committed offsets:
    // the rewind reads their records again, so they are dropped too. Produced into the next transaction,
    // their outputs would be visible twice (seen: the 16 outputs of the first transaction after a seal).
    this.epoch++;
    this.progress();
  }

  /**
   * Ends whatever an earlier transaction of this producer may have left open on the output partitions,
   * before anything is written there again. A coordinator that ends a transaction while the leaders of
   * its partitions are unknown skips their ABORT markers, taking them for deleted partitions; a broker
   * that has just restarted does this for its own partitions until the cluster takes it back (seen with
   * one broker and a transaction that timed out while it was away). The aborted records then stay open,
   * and the next transaction this producer id commits on such a partition commits them with its own:
   * read_committed readers would see those outputs twice. One transaction that writes a record to every
   * output partition, and the offsets of the assigned input partitions, and is aborted, ends them all:
   * its ABORT marker closes everything the producer id had open there before it. Also run once at
   * start, for what an earlier run of this instance may have left open that way.
   */
  async seal(): Promise<void> {
    const { outputTopics, consumer } = this.ctx;
    const partitions: Toppar[] = [];
    for (const topic of outputTopics) {
      for (const partition of await partitionsOf(this.producer, topic, this.callTimeout())) partitions.push({ topic, partition });
    }
    for (let attempt = 1; ; attempt++) {
      // Stopping: the seal is left to the next start, which seals first.
      if (this.finishing || this.ctx.owner.halted) return;
      const before = await stableOffsets(consumer, partitions, this.callTimeout());
      try {
        await this.sealOnce(partitions);
      } catch (err) {
        const e = err as LibrdKafkaError;
        if (!e.isTxnRequiresAbort || attempt >= MAX_SEAL_ATTEMPTS) throw e;
        // A sealing transaction fails as any other can (say, sequence numbers skipped by the failed
        // output that aborted the transaction before it): it is aborted, and the seal tried again.
        this.ctx.log.warn('sealing transaction failed; aborting it and sealing again', { error: e.message, attempt });
        await this.retrying('abort the sealing transaction', (cb) => this.producer.abortTransaction(this.callTimeout(), cb));
        continue;
      }
      // The seal's ABORT marker may be skipped the same way (the broker not yet back in the cluster):
      // then its own records stay open, and each partition's last stable offset stays where it was.
      const stuck = await this.stableOffsetsPassed(partitions, before);
      if (stuck.length === 0) {
        this.ctx.log.info('output partitions sealed', { topics: outputTopics, attempts: attempt });
        return;
      }
      if (this.finishing || this.ctx.owner.halted) return;
      if (attempt >= MAX_SEAL_ATTEMPTS) {
        // Not this producer's, or not one a seal can end: going on is all that is left.
        this.ctx.log.error('an output partition keeps an open transaction after every seal; going on (kafka-transactions.sh '
          + 'find-hanging names it)', { partitions: stuck.map(partitionName), attempts: attempt });
        return;
      }
      this.ctx.log.warn('an output partition still holds an open transaction after the seal; sealing again', {
        partitions: stuck.map(partitionName), attempt,
      });
    }
  }

  /** One sealing transaction: a record to each of `partitions`, the input offsets, then the abort. */
  private async sealOnce(partitions: readonly Toppar[]): Promise<void> {
    const { consumer, inputTopic } = this.ctx;
    await this.retrying('seal the output partitions', (cb) => this.producer.beginTransaction(cb));
    for (const { topic, partition } of partitions) {
      this.producer.produce(topic, partition, SEAL_VALUE, null, null, undefined, [{ [SEAL_HEADER]: this.ctx.transactionalId }]);
    }
    // Written before the abort: an abort purges what is still queued, and a partition never written
    // to is not part of the transaction, so its marker would not be written either.
    await this.retrying('write the sealing records', (cb) => this.producer.flush(this.callTimeout(), cb));
    const positions = consumer.position(this.ctx.owner.assignedPartitions.map((partition) => ({ topic: inputTopic, partition })))
      .filter((p) => typeof p.offset === 'number' && p.offset >= 0);
    if (positions.length > 0) {
      await this.retrying('seal the input offsets', (cb) => this.producer.sendOffsetsToTransaction(
        positions.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.offset! })), consumer, this.callTimeout(), cb));
    }
    await this.retrying('abort the sealing transaction', (cb) => this.producer.abortTransaction(this.callTimeout(), cb));
  }

  /**
   * Waits, at most {@link SEAL_CHECK_MS}, until the last stable offset of every partition has passed
   * its value in `before`; returns the partitions where it has not. Another instance's open transaction
   * holds it back for at most its transaction timeout, which is shorter.
   */
  private async stableOffsetsPassed(partitions: readonly Toppar[], before: ReadonlyMap<string, number>): Promise<Toppar[]> {
    const deadline = Date.now() + SEAL_CHECK_MS;
    let stuck = [...partitions];
    for (;;) {
      const now = await stableOffsets(this.ctx.consumer, stuck, this.callTimeout());
      stuck = stuck.filter((p) => (now.get(key(p)) ?? -1) <= (before.get(key(p)) ?? -1));
      if (stuck.length === 0 || Date.now() >= deadline || this.finishing || this.ctx.owner.halted) return stuck;
      await new Promise((resolve) => setTimeout(resolve, SEAL_POLL_MS));
    }
  }

  private reset(): void {
    clearTimeout(this.timer);
    this.open = false;
    this.sent = [];
    this.records = 0;
  }

  /**
   * A commit step, called again while it fails with a retriable error (a timeout: the coordinator away
   * for a while), as librdkafka asks. Aborting instead could race a commit the coordinator has already
   * begun: it would complete that commit after a restart, and the records, rewound and scored again,
   * would be output twice. Gives up only when stopping, or on an error that is not retriable.
   */
  private async retrying(what: string, step: (cb: (err: LibrdKafkaError | null | undefined) => void) => void): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await call(step);
        if (attempt > 1) this.ctx.log.info('transaction step done after retries', { step: what, attempts: attempt });
        return;
      } catch (err) {
        const e = err as LibrdKafkaError;
        const retriable = (e.isRetriable || e.code === CODES.ERRORS.ERR__TIMED_OUT) && !e.isTxnRequiresAbort && !e.isFatal;
        if (!retriable || this.finishing || this.ctx.owner.halted) throw e;
        if (attempt === 1) this.ctx.log.warn('transaction step not answered yet; retrying', { step: what, error: e.message });
      }
    }
  }

  /** A transactional call's bound: {@link TRANSACTION_TIMEOUT_MS}, and no later than the shutdown's deadline. */
  private callTimeout(): number {
    return Math.max(1, Math.min(TRANSACTION_TIMEOUT_MS, this.deadline - Date.now()));
  }

  private progress(): void {
    this.waiting.signal();
    this.ctx.onProgress();
  }
}

function positionKey(output: Output): string {
  return `${output.source.partition}/${output.source.offset}`;
}
