/**
 * Writes the shadow model's outputs (`--shadow-topic`) through a producer of their own: best effort,
 * and never part of the main stream. A shadow output that is refused, or whose topic is missing, costs
 * that shadow output only: it is counted in `xgb_stream_shadow_delivery_failures_total` and logged at
 * most once a minute; it never holds back an offset, never fails a flush of the main outputs and never
 * dooms an exactly-once transaction, which a failed output of the transactional producer would.
 */
import { CODES, Producer, type LibrdKafkaError } from 'node-rdkafka';
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import type { ShadowOutput } from '../score/output';

/** At most one warn line per this long about failing shadow outputs. */
const WARN_INTERVAL_MS = 60_000;

type Inc = { inc(by?: number): void };

/** Produces shadow outputs; see the module comment. */
export class ShadowWriter {
  private readonly failures: Inc;
  private readonly delivered: Inc;
  private lastWarned = 0;
  /** Failures since the last warn line, reported with the next one. */
  private unreported = 0;

  constructor(readonly producer: Producer, private readonly log: Logger, metrics: ProcessorMetrics, topic: string) {
    this.failures = metrics.shadowDeliveryFailures.child({});
    this.delivered = metrics.recordsOut.child({ topic });
    producer.on('delivery-report', (err) => {
      if (err) this.failed(err);
      else this.delivered.inc();
    });
  }

  /** Hands shadow outputs to their producer; one that does not fit the local queue is dropped and counted. */
  write(outputs: readonly ShadowOutput[]): void {
    for (const o of outputs) {
      try {
        this.producer.produce(o.topic, null, o.value, o.key, null, undefined);
      } catch (err) {
        const e = err as LibrdKafkaError;
        this.failed(e.code === CODES.ERRORS.ERR__QUEUE_FULL ? { ...e, message: 'the shadow producer\'s queue is full' } : e);
      }
    }
  }

  private failed(err: Pick<LibrdKafkaError, 'message' | 'code'>): void {
    this.failures.inc();
    this.unreported++;
    const now = Date.now();
    if (now - this.lastWarned < WARN_INTERVAL_MS) return;
    this.log.warn('shadow outputs not delivered', { failures: this.unreported, error: err.message, code: err.code });
    this.lastWarned = now;
    this.unreported = 0;
  }
}
