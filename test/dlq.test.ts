/**
 * `xgb-stream-dlq` against the real broker: dead letters with the processor's own headers
 * (lib/processor/score/output.ts writes them), inspected, then replayed with filters, a bound, a dry run, a
 * resumed run and the replay-count guard.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import type { Message, MessageHeader } from 'node-rdkafka';
import { deadLetterHeaders } from '../lib/processor/score/output';
import type { DeadLetterReason } from '../lib/processor/score/validate';
import { ROOT, brokers, committedOffsets, createTopics, header, produceAll, readToEnd, uniqueName, type OutgoingRecord } from './helpers/kafka';

const DLQ_CLI = path.join(ROOT, 'dist', 'dlq.js');

function runDlq(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [DLQ_CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

// An hour ago, on a whole second: the test broker keeps records for 24 h (log.retention.hours), and its
// retention check, once a minute, deletes a partition's records once their timestamps are older.
const T0 = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;

interface Letter { key: string; reason: DeadLetterReason; partition: number; at: number; replays?: number; truncated?: boolean }

/** The dead letters: the input's own `trace` header, then what the processor adds. */
const LETTERS: Letter[] = [
  { key: 'u0', reason: 'undecodable', partition: 0, at: T0 },
  { key: 'u1', reason: 'undecodable', partition: 1, at: T0 + 1000 },
  { key: 'w0', reason: 'wrong-feature-count', partition: 0, at: T0 + 2000 },
  { key: 'u2', reason: 'undecodable', partition: 0, at: T0 + 3000 },
  { key: 'm0', reason: 'missing-feature', partition: 1, at: T0 + 4000 },
  { key: 'u3', reason: 'undecodable', partition: 1, at: T0 + 5000 },
  { key: 'w1', reason: 'wrong-feature-count', partition: 1, at: T0 + 6000 },
  { key: 'u-looping', reason: 'undecodable', partition: 0, at: T0 + 7000, replays: 3 },
  { key: 'm-cut', reason: 'missing-feature', partition: 0, at: T0 + 8000, truncated: true },
  { key: 'w2', reason: 'wrong-feature-count', partition: 0, at: T0 + 9000 },
];

function valueOf(key: string): Buffer {
  return Buffer.from(`value of ${key}\u0000\u00ff`, 'latin1');
}

function letter(input: string, l: Letter, offset: number): OutgoingRecord {
  const own: MessageHeader[] = [{ trace: `t-${l.key}` }, ...(l.replays ? [{ 'xgb.replay.count': String(l.replays) }] : [])];
  const headers = deadLetterHeaders({ topic: input, partition: l.partition, offset, headers: own }, l.reason, `why ${l.key}`);
  if (l.truncated) headers.push({ 'xgb.error.original-size': '2000000' }, { 'xgb.error.truncated': 'true' });
  // The dead-letter topic's own partition follows the source's here, as one processor's would not need to.
  return { key: l.key, value: valueOf(l.key), headers, timestamp: l.at, partition: l.partition };
}

function headersOf(m: Message): Array<[string, string]> {
  return (m.headers ?? []).flatMap((h) => Object.entries(h).map(([k, v]) => [k, v.toString()] as [string, string]));
}

describe('xgb-stream-dlq', () => {
  let input: string;
  let dlq: string;
  beforeAll(async () => {
    const base = uniqueName('dlq');
    input = `${base}-in`;
    dlq = `${base}-in.dlq`;
    await createTopics([input, dlq], 2);
    await produceAll(dlq, LETTERS.map((l, i) => letter(input, l, 100 + i)));
  });

  it('inspects: counts by reason and by source partition, and the first records with their headers', async () => {
    const r = await runDlq(['inspect', '--brokers', brokers(), '--topic', dlq, '--show', '10', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.records).toBe(10);
    expect(report.byReason).toEqual({ undecodable: 5, 'wrong-feature-count': 3, 'missing-feature': 2 });
    expect(report.bySource).toEqual({ [`${input}/0`]: 6, [`${input}/1`]: 4 });
    expect(report.firstTimestamp).toBe(T0);
    expect(report.lastTimestamp).toBe(T0 + 9000);
    expect(report.shown).toHaveLength(10);
    const first = report.shown.find((s: { key: string }) => s.key === 'u0');
    expect(first.headers).toEqual([['trace', 't-u0'], ['xgb.source.topic', input], ['xgb.source.partition', '0'],
      ['xgb.source.offset', '100'], ['xgb.error.reason', 'undecodable'], ['xgb.error.message', 'why u0']]);
    expect(first.valueBytes).toBe(valueOf('u0').length);

    const text = await runDlq(['inspect', '--brokers', brokers(), '--topic', dlq, '--show', '0']);
    expect(text.stdout).toContain(`${dlq}: 10 dead letters\n  from ${new Date(T0).toISOString()} to ${new Date(T0 + 9000).toISOString()}\nby reason:\n`
      + '           5  undecodable\n           3  wrong-feature-count\n           2  missing-feature\n');
  });

  it('replays by reason: a dry run sends nothing, --max stops early, a second run resumes, the loop guard holds', async () => {
    const group = uniqueName('dlq-replay');
    const common = ['replay', '--brokers', brokers(), '--topic', dlq, '--reason', 'undecodable', '--group-id', group, '--json'];

    const dry = await runDlq([...common, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, read: 10, total: 10, replayed: 4, filteredOut: 5, overMaxReplays: 1, truncated: 0 });
    expect(await readToEnd([input])).toHaveLength(0);
    expect(await committedOffsets(group, dlq, 2)).toEqual([-1001, -1001]);

    const first = await runDlq([...common, '--max', '2']);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ replayed: 2, byReason: { undecodable: 2 } });
    expect(first.stderr).toMatch(/^dlq replay: \d+\/10 read, \d replayed/m);
    expect(await readToEnd([input])).toHaveLength(2);

    const second = await runDlq(common);
    expect(second.code).toBe(0);
    const rest = JSON.parse(second.stdout);
    expect(rest.replayed).toBe(2);
    expect(rest.overMaxReplays).toBe(1);
    expect(rest.read + JSON.parse(first.stdout).read).toBe(10);
    expect(await committedOffsets(group, dlq, 2)).toEqual([6, 4]);

    const replayed = await readToEnd([input]);
    expect(replayed.map((m) => m.key!.toString()).sort()).toEqual(['u0', 'u1', 'u2', 'u3']);
    for (const m of replayed) {
      const l = LETTERS.find((x) => x.key === m.key!.toString())!;
      expect(m.partition).toBe(l.partition);
      expect(m.value!.equals(valueOf(l.key))).toBe(true);
      expect(headersOf(m)).toEqual([['trace', `t-${l.key}`], ['xgb.replay.count', '1']]);
    }

    // Nothing new since: a third run reads nothing and sends nothing.
    const third = await runDlq(common);
    expect(JSON.parse(third.stdout)).toMatchObject({ read: 0, total: 0, replayed: 0 });
  });

  it('replays to another topic within a time range, never a truncated value', async () => {
    const other = uniqueName('dlq-other');
    await createTopics([other], 1);
    const r = await runDlq(['replay', '--brokers', brokers(), '--topic', dlq, '--to', other, '--group-id', uniqueName('dlq-to'),
      '--since', new Date(T0 + 2000).toISOString(), '--until', String(T0 + 9000), '--json']);
    expect(r.code).toBe(0);
    // w0 u2 m0 u3 w1 in range; u-looping at its limit; m-cut truncated.
    expect(JSON.parse(r.stdout)).toMatchObject({ read: 10, replayed: 5, filteredOut: 3, overMaxReplays: 1, truncated: 1 });
    const sent = await readToEnd([other]);
    expect(sent.map((m) => m.key!.toString()).sort()).toEqual(['m0', 'u2', 'u3', 'w0', 'w1']);
    expect(header(sent[0], 'xgb.replay.count')).toBe('1');
  });

  it('stops at a bad flag with exit 2, naming it', async () => {
    expect(await runDlq(['replay', '--reason', 'bogus'])).toEqual({ code: 2, stdout: '',
      stderr: expect.stringMatching(/^xgb-stream-dlq: invalid --reason 'bogus': expected one of null-value, undecodable, /) });
    expect(await runDlq(['inspect', '--max', '3'])).toEqual({ code: 2, stdout: '', stderr: 'xgb-stream-dlq: --max is an option of replay, not inspect\n' });
    expect(await runDlq(['purge'])).toEqual({ code: 2, stdout: '', stderr: "xgb-stream-dlq: unknown command 'purge': expected inspect or replay (see --help)\n" });
    expect(await runDlq(['inspect', '--kafka-config', '/nonexistent/kafka.properties'])).toEqual({ code: 2, stdout: '',
      stderr: 'xgb-stream-dlq: cannot read --kafka-config /nonexistent/kafka.properties: ENOENT\n' });
    expect(await runDlq(['replay', '-X', 'bogus.property=1'])).toEqual({ code: 2, stdout: '',
      stderr: 'xgb-stream-dlq: -X: No such configuration property: "bogus.property"\n' });
    expect(await runDlq(['replay', '--since', 'yesterday'])).toEqual({ code: 2, stdout: '',
      stderr: "xgb-stream-dlq: invalid --since 'yesterday': expected an ISO 8601 time or milliseconds since the epoch\n" });
  });
});
