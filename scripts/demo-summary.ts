/**
 * The demo's closing summary, computed only from the messages the processor wrote: counts per topic,
 * dead letters, throughput, latency percentiles, and the streamed alerts judged against the ground
 * truth that each output carries over from its input in the `label` header. Pure, so that a test can
 * check it against real outputs.
 */
import type { MessageHeader } from 'node-rdkafka';
import { decodeScoredRecord } from '../lib/codec';
import { HEADER } from '../lib/processor/score/output';
import { LABEL_HEADER } from '../lib/replay';

/** One message read from an output topic. */
export interface ObservedMessage {
  readonly topic: string;
  readonly value: Buffer | null;
  readonly headers?: readonly MessageHeader[];
  /** The message's own timestamp: the processor's CreateTime, set when it produced the output. */
  readonly timestamp?: number;
  /** When the demo's consumer received it, in ms since the epoch. */
  readonly receivedAtMs: number;
}

/** The topics of one run. */
export interface DemoTopics {
  readonly input: string;
  readonly suspicious: string;
  readonly regular: string;
  readonly deadLetter: string;
}

/** The held-out metrics of the trainer's model card. */
export interface ModelCardMetrics {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly confusionMatrix: ConfusionMatrix;
}

export interface ConfusionMatrix {
  readonly tp: number;
  readonly fp: number;
  readonly tn: number;
  readonly fn: number;
}

/** Latency percentiles in milliseconds over `count` outputs. */
export interface LatencyStats {
  readonly count: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** Everything the demo reports at the end. */
export interface DemoSummary {
  readonly topics: DemoTopics;
  /** Records the replay tool had acknowledged on the input topic. */
  readonly recordsIn: number;
  /** Messages read per output topic, duplicates included. */
  readonly recordsOut: { readonly suspicious: number; readonly regular: number; readonly deadLetter: number };
  /** Input records with at least one output (by source partition and offset). */
  readonly distinctOutputs: number;
  /** Outputs of an input record that already had one: at-least-once delivery after a retry or restart. */
  readonly duplicates: number;
  /** Input records without any output. */
  readonly missing: number;
  readonly deadLetterReasons: Readonly<Record<string, number>>;
  /** Distinct outputs per second between the first and the last output's CreateTime. */
  readonly throughput: number;
  /** Output consumer's receive time minus the input's CreateTime (the replay tool's send time). */
  readonly latency: LatencyStats;
  /** Output CreateTime (when the processor produced it) minus the input's CreateTime. */
  readonly latencyToProduce: LatencyStats;
  /** Suspicious-topic membership against the label header, over distinct scored outputs with a label. */
  readonly confusionMatrix: ConfusionMatrix;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  /** Scored outputs without a label header (random records), left out of the matrix. */
  readonly unlabelled: number;
  /** Scored outputs whose `suspicious` field disagrees with the topic they were written to. */
  readonly routingMismatches: number;
  readonly modelCard?: ModelCardMetrics;
}

function headerValue(headers: readonly MessageHeader[] | undefined, key: string): string | undefined {
  for (const h of headers ?? []) if (key in h) return h[key].toString();
  return undefined;
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Percentiles of latencies in ms. */
function latencyStats(values: readonly number[]): LatencyStats {
  const sorted = Float64Array.from(values).sort();
  const arr = Array.from(sorted);
  return { count: arr.length, p50: percentile(arr, 50), p95: percentile(arr, 95), p99: percentile(arr, 99),
    max: arr.length > 0 ? arr[arr.length - 1] : NaN };
}

function ratio(num: number, den: number): number {
  return den > 0 ? num / den : NaN;
}

/**
 * Summarises a run from the outputs read back: each input record counts once (the first output seen
 * for its source partition and offset), so duplicates from at-least-once delivery do not skew the
 * classification metrics.
 */
export function summarise(outputs: readonly ObservedMessage[],
  run: { topics: DemoTopics; recordsIn: number; modelCard?: ModelCardMetrics }): DemoSummary {
  const { topics } = run;
  const recordsOut = { suspicious: 0, regular: 0, deadLetter: 0 };
  const seen = new Set<string>();
  const deadLetterReasons: Record<string, number> = {};
  const latency: number[] = [];
  const latencyToProduce: number[] = [];
  let duplicates = 0;
  let firstOut = Infinity;
  let lastOut = -Infinity;
  let tp = 0; let fp = 0; let tn = 0; let fn = 0;
  let unlabelled = 0;
  let routingMismatches = 0;

  for (const m of outputs) {
    let kind: 'suspicious' | 'regular' | 'deadLetter';
    if (m.topic === topics.suspicious) kind = 'suspicious';
    else if (m.topic === topics.regular) kind = 'regular';
    else if (m.topic === topics.deadLetter) kind = 'deadLetter';
    else continue;
    recordsOut[kind]++;

    // A scored output carries its input's position in the value; a dead letter, whose value is the
    // input's own bytes, in headers.
    const record = kind === 'deadLetter' ? undefined : decodeScoredRecord(m.value ?? Buffer.alloc(0));
    const source = record ? `${record.sourceTopic}/${record.sourcePartition}/${record.sourceOffset}`
      : `${headerValue(m.headers, HEADER.sourceTopic)}/${headerValue(m.headers, HEADER.sourcePartition)}`
        + `/${headerValue(m.headers, HEADER.sourceOffset)}`;
    if (seen.has(source)) {
      duplicates++;
      continue;
    }
    seen.add(source);
    if (m.timestamp !== undefined && m.timestamp >= 0) {
      firstOut = Math.min(firstOut, m.timestamp);
      lastOut = Math.max(lastOut, m.timestamp);
    }

    if (!record) {
      const reason = headerValue(m.headers, HEADER.errorReason) ?? 'unknown';
      deadLetterReasons[reason] = (deadLetterReasons[reason] ?? 0) + 1;
      continue;
    }
    const eventMs = Number(record.eventTimestampMs);
    latency.push(m.receivedAtMs - eventMs);
    if (m.timestamp !== undefined && m.timestamp >= 0) latencyToProduce.push(m.timestamp - eventMs);
    const alerted = kind === 'suspicious';
    if (record.suspicious !== alerted) routingMismatches++;
    const label = headerValue(m.headers, LABEL_HEADER);
    if (label === '1') {
      if (alerted) tp++; else fn++;
    } else if (label === '0') {
      if (alerted) fp++; else tn++;
    } else {
      unlabelled++;
    }
  }

  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  const spanMs = lastOut - firstOut;
  return {
    topics,
    recordsIn: run.recordsIn,
    recordsOut,
    distinctOutputs: seen.size,
    duplicates,
    missing: Math.max(0, run.recordsIn - seen.size),
    deadLetterReasons,
    throughput: spanMs > 0 ? (seen.size * 1000) / spanMs : NaN,
    latency: latencyStats(latency),
    latencyToProduce: latencyStats(latencyToProduce),
    confusionMatrix: { tp, fp, tn, fn },
    precision,
    recall,
    f1: ratio(2 * precision * recall, precision + recall),
    unlabelled,
    routingMismatches,
    modelCard: run.modelCard,
  };
}

/** Standard error of a proportion estimated from n trials: the yardstick for "within sampling noise". */
function standardError(p: number, n: number): number {
  return n > 0 && Number.isFinite(p) ? Math.sqrt((p * (1 - p)) / n) : NaN;
}

const int = (n: number): string => n.toLocaleString('en-US');
const ms = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(0)} ms` : 'n/a');
const pct = (n: number): string => (Number.isFinite(n) ? n.toFixed(4) : 'n/a');

/** The summary as the demo prints it. */
export function formatSummary(s: DemoSummary, extra: { elapsedMs?: number; replayRate?: number } = {}): string {
  const cm = s.confusionMatrix;
  const lines = [
    'xgb-stream demo: summary (computed from the messages read back from the output topics)',
    '',
    `records in       ${int(s.recordsIn).padStart(9)}  ${s.topics.input}`,
    `suspicious out   ${int(s.recordsOut.suspicious).padStart(9)}  ${s.topics.suspicious}`,
    `regular out      ${int(s.recordsOut.regular).padStart(9)}  ${s.topics.regular}`,
    `dead letters     ${int(s.recordsOut.deadLetter).padStart(9)}  ${s.topics.deadLetter}`
      + (Object.keys(s.deadLetterReasons).length > 0
        ? `  (${Object.entries(s.deadLetterReasons).map(([r, n]) => `${r}: ${int(n)}`).join(', ')})` : ''),
    `duplicates       ${int(s.duplicates).padStart(9)}    missing ${int(s.missing)}`,
    '',
    `throughput       ${int(Math.round(s.throughput)).padStart(9)} records/s (first to last output's CreateTime)`
      + (extra.replayRate !== undefined ? `; replayed at ${int(Math.round(extra.replayRate))} records/s` : ''),
    `latency          p50 ${ms(s.latency.p50)}, p95 ${ms(s.latency.p95)}, p99 ${ms(s.latency.p99)}, max ${ms(s.latency.max)}`,
    '                 (output received by the demo consumer minus the input CreateTime, the send time)',
    `  of which to produce: p50 ${ms(s.latencyToProduce.p50)}, p95 ${ms(s.latencyToProduce.p95)}, `
      + `p99 ${ms(s.latencyToProduce.p99)} (output CreateTime minus input CreateTime)`,
    '',
    'alerts vs labels (suspicious topic = alert)',
  ];
  const card = s.modelCard;
  // n: the trials behind the proportion, for its standard error; F1 is not a proportion and has none.
  const row = (name: string, streamed: number, cardValue: number | undefined, n?: number): string => {
    let text = `  ${name.padEnd(10)} ${pct(streamed).padStart(8)}`;
    if (cardValue !== undefined && n === undefined) text += `   ${pct(cardValue).padStart(8)}`;
    else if (cardValue !== undefined && n !== undefined) {
      const se = standardError(cardValue, n);
      const z = Math.abs(streamed - cardValue) / se;
      const verdict = !Number.isFinite(z) ? (streamed === cardValue ? 'equal' : '')
        : z <= 2 ? 'within sampling noise' : `${z.toFixed(1)} standard errors apart`;
      text += `   ${pct(cardValue).padStart(8)}   ${verdict}${Number.isFinite(se) ? ` (se ${se.toFixed(4)})` : ''}`;
    }
    return text;
  };
  lines.push(card ? `  ${''.padEnd(10)} ${'streamed'.padStart(8)}   ${'card'.padStart(8)}` : '');
  lines.push(row('precision', s.precision, card?.precision, cm.tp + cm.fp));
  lines.push(row('recall', s.recall, card?.recall, cm.tp + cm.fn));
  lines.push(row('f1', s.f1, card?.f1));
  lines.push('');
  lines.push(`  confusion matrix (streamed)   alert       no alert`);
  lines.push(`    fraud                      ${int(cm.tp).padStart(7)} tp  ${int(cm.fn).padStart(7)} fn`);
  lines.push(`    genuine                    ${int(cm.fp).padStart(7)} fp  ${int(cm.tn).padStart(7)} tn`);
  if (card) {
    const c = card.confusionMatrix;
    lines.push(`  model card (held-out set)     tp ${int(c.tp)}, fp ${int(c.fp)}, tn ${int(c.tn)}, fn ${int(c.fn)}`);
  }
  if (s.unlabelled > 0) lines.push(`  ${int(s.unlabelled)} scored outputs had no label header and are left out`);
  if (s.routingMismatches > 0) {
    lines.push(`  WARNING: ${int(s.routingMismatches)} outputs were routed against their own 'suspicious' field`);
  }
  if (extra.elapsedMs !== undefined) lines.push('', `wall time ${(extra.elapsedMs / 1000).toFixed(1)} s`);
  return lines.join('\n');
}
