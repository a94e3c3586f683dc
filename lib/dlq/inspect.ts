/**
 * `xgb-stream-dlq inspect`: what the dead-letter topic holds, read once from its start to its end as
 * it was: counts by reason and by the partition the inputs came from, and the first records with
 * their headers.
 */
import { uniqueGroupId } from './options';
import { readDeadLetter, headerText } from './dead-letter';
import { connectConsumer, disconnect, partitionRanges, readRanges } from './topic-reader';

export interface InspectOptions {
  readonly brokers: string;
  readonly topic: string;
  /** How many records to show in full. */
  readonly show: number;
  readonly kafkaProperties: Readonly<Record<string, string>>;
  readonly onProgress?: (read: number, total: number) => void;
}

/** One record shown in full. */
export interface ShownRecord {
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number | undefined;
  readonly key: string | null;
  readonly valueBytes: number;
  readonly headers: Array<[string, string]>;
}

export interface InspectReport {
  readonly topic: string;
  readonly records: number;
  /** Count per `xgb.error.reason`; `(none)` for records without one. */
  readonly byReason: Record<string, number>;
  /** Count per `<source topic>/<partition>` of the input. */
  readonly bySource: Record<string, number>;
  /** Earliest and latest record timestamps, ms since the epoch. */
  readonly firstTimestamp: number | undefined;
  readonly lastTimestamp: number | undefined;
  readonly shown: ShownRecord[];
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

export async function inspect(options: InspectOptions): Promise<InspectReport> {
  // A group of its own that never commits: inspecting moves nobody's offsets.
  const consumer = await connectConsumer(options.brokers, uniqueGroupId('xgb-stream-dlq-inspect'), options.kafkaProperties);
  const report: InspectReport = {
    topic: options.topic, records: 0, byReason: {}, bySource: {}, firstTimestamp: undefined, lastTimestamp: undefined, shown: [],
  };
  const r = report as { records: number; firstTimestamp?: number; lastTimestamp?: number };
  try {
    const ranges = await partitionRanges(consumer, options.topic, 'beginning');
    const total = ranges.reduce((n, p) => n + p.end - p.start, 0);
    await readRanges(consumer, options.topic, ranges, async (batch) => {
      for (const m of batch) {
        const d = readDeadLetter(m);
        r.records++;
        bump(report.byReason, d.reason ?? '(none)');
        bump(report.bySource, d.sourceTopic === undefined ? '(unknown)' : `${d.sourceTopic}/${d.sourcePartition ?? '?'}`);
        if (m.timestamp !== undefined && m.timestamp >= 0) {
          r.firstTimestamp = Math.min(r.firstTimestamp ?? Infinity, m.timestamp);
          r.lastTimestamp = Math.max(r.lastTimestamp ?? -Infinity, m.timestamp);
        }
        if (report.shown.length < options.show) {
          report.shown.push({
            partition: m.partition, offset: m.offset, timestamp: m.timestamp, key: m.key === null || m.key === undefined ? null : m.key.toString(),
            valueBytes: m.value?.length ?? 0, headers: headerText(m.headers),
          });
        }
      }
      options.onProgress?.(r.records, total);
      return true;
    });
  } finally {
    await disconnect(consumer);
  }
  return report;
}

/** The report as text for a terminal. */
export function formatInspect(report: InspectReport): string {
  const lines = [`${report.topic}: ${report.records.toLocaleString('en-US')} dead letters`];
  if (report.firstTimestamp !== undefined) {
    lines.push(`  from ${new Date(report.firstTimestamp).toISOString()} to ${new Date(report.lastTimestamp!).toISOString()}`);
  }
  const table = (title: string, counts: Record<string, number>): void => {
    lines.push(title);
    for (const [k, n] of Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) {
      lines.push(`  ${String(n).padStart(10)}  ${k}`);
    }
  };
  table('by reason:', report.byReason);
  table('by source partition:', report.bySource);
  if (report.shown.length > 0) lines.push(`first ${report.shown.length}:`);
  for (const s of report.shown) {
    const at = s.timestamp !== undefined && s.timestamp >= 0 ? ` ${new Date(s.timestamp).toISOString()}` : '';
    lines.push(`  partition ${s.partition} offset ${s.offset}${at} key ${s.key === null ? '(null)' : JSON.stringify(s.key)} value ${s.valueBytes} bytes`);
    for (const [k, v] of s.headers) lines.push(`    ${k}: ${v}`);
  }
  return lines.join('\n');
}
