/**
 * A second instance joins the group mid-stream, as autoscaling adds one: the first gives up part of its
 * partitions while records keep coming. Under both assignors and both guarantees nothing is lost;
 * under exactly-once nothing is output twice to a read_committed reader. The cooperative-sticky
 * assignor revokes only what moves, and the first instance keeps scoring the rest meanwhile.
 */
import type { Message } from 'node-rdkafka';
import { decodeScoredRecord } from '../lib/codec';
import { replay } from '../lib/replay';
import { loadTestVectors, replayRecords } from './helpers/fixtures';
import { until } from './helpers/in-process';
import {
  ProcessorProcess, brokers, createTopicSet, outputTopics, readCommitted, readToEnd, topicFlags, uniqueName,
} from './helpers/kafka';

const RECORDS = 4_000;
const RATE = 1_000;

/** The log lines of an instance about its partitions, in order. */
function rebalances(p: ProcessorProcess): Array<{ message: string; partitions: number[]; assigned: number[] }> {
  return p.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    .filter((l) => l.message === 'partitions assigned' || l.message === 'partitions revoked');
}

const holding = (p: ProcessorProcess): number[] => rebalances(p).at(-1)?.assigned ?? [];

function positions(messages: readonly Message[]): Map<string, number> {
  const seen = new Map<string, number>();
  for (const m of messages) {
    const r = decodeScoredRecord(m.value!);
    const key = `${r.sourcePartition}/${r.sourceOffset}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

describe.each([
  ['range', 'at-least-once'], ['cooperative-sticky', 'at-least-once'],
  ['range', 'exactly-once'], ['cooperative-sticky', 'exactly-once'],
])('a second instance joining mid-stream (%s assignor, %s)', (assignor, guarantee) => {
  it(`takes over part of the partitions with 0 lost${guarantee === 'exactly-once' ? ' and 0 duplicated' : ''}`, async () => {
    const topics = await createTopicSet('join', 4);
    const records = replayRecords(loadTestVectors(), 'j', RECORDS);
    const common = ['--log-level', 'info', ...topicFlags(topics), '--group-id', uniqueName('g-join'),
      '--guarantee', guarantee, '-X', `partition.assignment.strategy=${assignor}`,
      // A production-like session: the join, not a timeout, moves the partitions.
      '-X', 'session.timeout.ms=30000', '-X', 'heartbeat.interval.ms=1000'];
    const a = ProcessorProcess.start([...common, '--instance-id', 'a']);
    let b: ProcessorProcess | undefined;
    try {
      await until('the first instance holding all four partitions', () => holding(a).length === 4, 60_000);
      const sending = replay({ brokers: brokers(), topic: topics.input, records, rate: RATE });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      b = ProcessorProcess.start([...common, '--instance-id', 'b']);
      await until('both instances holding partitions', () =>
        holding(a).length > 0 && holding(b!).length > 0 && holding(a).length + holding(b!).length === 4, 60_000);
      expect(await sending).toMatchObject({ sent: RECORDS, failed: 0 });

      const read = () => (guarantee === 'exactly-once' ? readCommitted : readToEnd)(outputTopics(topics));
      let all: Message[] = [];
      await until('an output of every input', async () => positions(all = await read()).size === RECORDS, 120_000);
      expect(await b.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(await a.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      all = await read();
      const seen = positions(all);
      const twice = [...seen.values()].filter((n) => n > 1).length;
      const revokedFromA = rebalances(a).find((l) => l.message === 'partitions revoked')!;
      process.stdout.write(`join (${assignor}, ${guarantee}): a revoked ${JSON.stringify(revokedFromA.partitions)} `
        + `keeping ${JSON.stringify(revokedFromA.assigned)}; ${all.length} outputs, ${seen.size} distinct, ${twice} twice\n`);
      expect(all.filter((m) => m.topic === topics.deadLetter)).toHaveLength(0);
      expect(seen.size).toBe(RECORDS);
      if (guarantee === 'exactly-once') expect(all).toHaveLength(RECORDS);
      if (assignor === 'cooperative-sticky') {
        // Incremental: only the partitions that move are revoked; the rest stay and keep being scored.
        expect(revokedFromA.partitions.length).toBe(2);
        expect(revokedFromA.assigned.length).toBe(2);
      } else {
        expect(revokedFromA.partitions).toEqual([0, 1, 2, 3]);
        expect(revokedFromA.assigned).toEqual([]);
      }
    } finally {
      for (const p of [a, b]) if (p && p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
    }
  }, 180_000);
});
