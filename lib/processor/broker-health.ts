/**
 * Whether the processor can reach the cluster, from librdkafka's statistics (once a second, from the
 * consumer and the main producer) and its error events. An outage is logged once when it starts (the brokers, since when, librdkafka's
 * reason), once a minute while it lasts, and once when it ends (its length); `xgb_stream_brokers_up`
 * and `/readyz` follow it. librdkafka reconnects by itself: this only makes the outage visible.
 */
import { CODES, type LibrdKafkaError } from 'node-rdkafka';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';

/** librdkafka: every broker connection is down. */
const ERR_ALL_BROKERS_DOWN = CODES.ERRORS.ERR__ALL_BROKERS_DOWN;
/**
 * librdkafka's connection errors, by code, or by text where node-rdkafka hands an error over as its
 * text alone.
 */
const CONNECTION_ERRORS: ReadonlySet<number> = new Set([CODES.ERRORS.ERR__TRANSPORT, ERR_ALL_BROKERS_DOWN]);
const CONNECTION_TEXT = /broker transport failure|all broker connections are down/i;
/** How often a lasting outage is logged again. */
const REMINDER_MS = 60_000;
/**
 * A client's statistics older than this no longer count: the consumer's arrive only with a consume
 * call, and a pipeline that has no room for more records makes none for a while.
 */
const STATS_FRESH_MS = 3_000;
/**
 * librdkafka's "all brokers down" starts an outage unless a client's statistics written within this
 * long after it show a broker up: a client can lose its connections for a second while the others
 * keep theirs (seen right after a broker restart, as a consumer rejoined its group), and that is no
 * outage. A real one shows in every client's statistics within a second or two anyway. (The native
 * path knows when statistics were written only to the second, rounded down: hence 3 s, not 2.)
 */
const CONFIRM_MS = 3_000;

/** One broker as librdkafka's statistics describe it. */
interface BrokerStats {
  readonly name: string;
  readonly nodeid: number;
  readonly state: string;
}

/** Follows the cluster's reachability; see the module comment. */
export class BrokerHealth {
  private downSince: number | undefined;
  private lastLogged = 0;
  private lastReason = 'no broker connection is up';
  /** Client errors during the outage, folded into its lines rather than logged one by one. */
  private folded = 0;
  /** Per client, whether its last statistics had a broker connection up, and when they came. */
  private readonly clients = new Map<string, { up: boolean; at: number }>();
  /** When librdkafka last said "all brokers down", while that awaits confirmation. */
  private suspectSince: number | undefined;

  constructor(private readonly brokers: string, private readonly log: Logger, private readonly metrics: ProcessorMetrics) {
    metrics.brokersUp.set({}, 1);
  }

  /** Why the cluster is unreachable, or undefined while it is reachable. */
  get outage(): string | undefined {
    if (this.downSince === undefined) return undefined;
    return `brokers ${this.brokers} unreachable since ${new Date(this.downSince).toISOString()}: ${this.lastReason}`;
  }

  /**
   * librdkafka's statistics JSON from `client`: the cluster is reachable while a client whose
   * statistics are fresh has a connection up to a broker it learned from metadata (node id ≥ 0;
   * bootstrap entries have -1). `emitted`: when librdkafka wrote them, when that is known to be
   * earlier than their arrival.
   */
  onStats(json: string, client = 'consumer', now = Date.now(), emitted = now): void {
    let brokers: BrokerStats[];
    try {
      brokers = Object.values((JSON.parse(json) as { brokers?: Record<string, BrokerStats> }).brokers ?? {});
    } catch {
      return;
    }
    const learned = brokers.filter((b) => b.nodeid >= 0);
    if (learned.length === 0) return;
    // Statistics written before the outage began cannot end it.
    const stale = this.downSince !== undefined && emitted < this.downSince;
    const clientUp = !stale && learned.some((b) => b.state === 'UP');
    this.clients.set(client, { up: clientUp, at: emitted });
    // A broker up since librdkafka said "all brokers down": that was no outage.
    if (clientUp && this.suspectSince !== undefined && emitted >= this.suspectSince) this.suspectSince = undefined;
    let up = false;
    for (const c of this.clients.values()) if (c.up && now - c.at <= STATS_FRESH_MS) up = true;
    this.update(up, now);
    this.confirm(now);
  }

  /**
   * A client error event: keeps librdkafka's reason. "All brokers down" starts an outage dated from
   * it, unless a client's statistics show a broker up within {@link CONFIRM_MS}.
   */
  onError(err: Pick<LibrdKafkaError, 'code' | 'message'>, now = Date.now()): void {
    this.lastReason = err.message;
    if (err.code === ERR_ALL_BROKERS_DOWN && this.downSince === undefined) this.suspectSince ??= now;
    this.confirm(now);
  }

  private confirm(now: number): void {
    if (this.suspectSince === undefined || now - this.suspectSince < CONFIRM_MS) return;
    const since = this.suspectSince;
    this.suspectSince = undefined;
    this.update(false, since);
  }

  /**
   * A client error that does not end the client, as both data paths report it: a connection error,
   * or any error while an outage lasts, is folded into the outage's own lines (librdkafka repeats its
   * connection errors several times a second, and reconnects by itself; an outage of all brokers gets
   * its own warn line) and logged at debug; any other is a warn line.
   */
  onClientError(client: string, err: Pick<LibrdKafkaError, 'code' | 'message'>, now = Date.now()): void {
    this.onError(err, now);
    if (this.outage !== undefined || CONNECTION_ERRORS.has(err.code) || CONNECTION_TEXT.test(err.message)) {
      this.lastReason = err.message;
      this.folded++;
      this.log.debug(`${client} error`, { error: err.message, code: err.code });
    } else {
      this.log.warn(`${client} error`, { error: err.message, code: err.code });
    }
  }

  private update(up: boolean, now: number): void {
    if (up) {
      if (this.downSince === undefined) return;
      this.log.info('brokers reachable again', {
        brokers: this.brokers, outageSeconds: Math.round((now - this.downSince) / 100) / 10, clientErrors: this.folded,
      });
      this.downSince = undefined;
      this.folded = 0;
      this.metrics.brokersUp.set({}, 1);
      return;
    }
    if (this.downSince === undefined) {
      // Dated from librdkafka's "all brokers down" when that came first.
      if (this.suspectSince !== undefined) now = Math.min(now, this.suspectSince);
      this.suspectSince = undefined;
      this.downSince = now;
      this.lastLogged = now;
      // What each client's statistics said before the outage no longer holds: only statistics
      // written since can end it.
      for (const c of this.clients.values()) c.up = false;
      this.metrics.brokersUp.set({}, 0);
      this.log.warn('brokers unreachable', {
        brokers: this.brokers, since: new Date(now).toISOString(), reason: this.lastReason,
      });
    } else if (now - this.lastLogged >= REMINDER_MS) {
      this.lastLogged = now;
      this.log.warn('brokers still unreachable', {
        brokers: this.brokers, since: new Date(this.downSince).toISOString(),
        downSeconds: Math.round((now - this.downSince) / 1000), reason: this.lastReason, clientErrors: this.folded,
      });
    }
  }
}
