/**
 * A record of the dead-letter topic, as the processor writes it (lib/processor/score/output.ts): the input's
 * key, value and headers byte for byte, then the `xgb.source.*` and `xgb.error.*` headers.
 */
import type { Message, MessageHeader } from 'node-rdkafka';
import { HEADER } from '../processor/score/output';

/** How many times a record has been sent back to the input by `xgb-stream-dlq replay`. */
export const REPLAY_COUNT_HEADER = 'xgb.replay.count';

/** The headers the processor adds to a dead letter: dropped when it is sent back as an input. */
const ADDED_HEADERS = new Set<string>([
  HEADER.sourceTopic, HEADER.sourcePartition, HEADER.sourceOffset, HEADER.errorReason, HEADER.errorMessage,
  HEADER.errorOriginalSize, HEADER.errorTruncated,
]);

/** What the dead-letter headers say about one record. */
export interface DeadLetter {
  readonly message: Message;
  /** `xgb.error.reason`; undefined on a record the processor did not write. */
  readonly reason: string | undefined;
  readonly error: string | undefined;
  readonly sourceTopic: string | undefined;
  readonly sourcePartition: number | undefined;
  readonly sourceOffset: number | undefined;
  /** The value was cut to fit the topic: it is not the input any more, and is never replayed. */
  readonly truncated: boolean;
  /** Replays so far: the `xgb.replay.count` it carries, 0 when none. */
  readonly replayCount: number;
}

/** The last value of header `key` as a string; headers repeat, and the processor's own come last. */
function lastHeader(headers: readonly MessageHeader[] | undefined, key: string): string | undefined {
  let found: string | undefined;
  for (const h of headers ?? []) if (key in h) found = h[key].toString();
  return found;
}

function integer(text: string | undefined): number | undefined {
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/** Reads the dead-letter headers of `message`. */
export function readDeadLetter(message: Message): DeadLetter {
  const h = message.headers;
  return {
    message,
    reason: lastHeader(h, HEADER.errorReason),
    error: lastHeader(h, HEADER.errorMessage),
    sourceTopic: lastHeader(h, HEADER.sourceTopic),
    sourcePartition: integer(lastHeader(h, HEADER.sourcePartition)),
    sourceOffset: integer(lastHeader(h, HEADER.sourceOffset)),
    truncated: lastHeader(h, HEADER.errorTruncated) === 'true',
    replayCount: integer(lastHeader(h, REPLAY_COUNT_HEADER)) ?? 0,
  };
}

/**
 * The headers of a dead letter sent back as an input: the input's own, without what the processor
 * added, and `xgb.replay.count` one more than before.
 */
export function replayHeaders(d: DeadLetter): MessageHeader[] {
  const own = (d.message.headers ?? []).filter((h) => !Object.keys(h).some((k) => ADDED_HEADERS.has(k) || k === REPLAY_COUNT_HEADER));
  return [...own, { [REPLAY_COUNT_HEADER]: String(d.replayCount + 1) }];
}

/** Header values as text for printing: UTF-8 when they are, hex otherwise. */
export function headerText(headers: readonly MessageHeader[] | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const h of headers ?? []) {
    for (const [k, v] of Object.entries(h)) {
      const b = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
      out.push([k, Buffer.from(b.toString('utf8'), 'utf8').equals(b) ? b.toString('utf8') : `0x${b.toString('hex')}`]);
    }
  }
  return out;
}
