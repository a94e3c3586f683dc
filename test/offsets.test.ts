import { OffsetTracker } from '../lib/processor/offsets';

describe('offset tracker', () => {
  it('stores a partition only up to its first undelivered record', () => {
    const t = new OffsetTracker('in');
    for (const o of [10, 11, 12, 13]) t.add(0, o);
    t.delivered(0, 11);
    t.delivered(0, 13);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(0, 10);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 12 }]);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(0, 12);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 14 }]);
    expect(t.inFlight).toBe(0);
  });

  it('waits for every output of a record', () => {
    const t = new OffsetTracker('in');
    t.add(3, 0, 2);
    t.delivered(3, 0);
    expect(t.pending()).toBe(1);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(3, 0);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 3, offset: 1 }]);
  });

  it('never stores past a failed output', () => {
    const t = new OffsetTracker('in');
    for (const o of [0, 1, 2]) t.add(0, o);
    t.delivered(0, 0);
    t.failed(0, 1);
    t.delivered(0, 2);
    expect(t.hasFailure).toBe(true);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 1 }]);
    expect(t.pending()).toBe(1);
  });

  it('keeps partitions apart and forgets dropped ones', () => {
    const t = new OffsetTracker('in');
    t.add(0, 5);
    t.add(1, 7);
    t.add(1, 8);
    t.delivered(1, 7);
    expect(t.pending([0])).toBe(1);
    expect(t.pending([1])).toBe(1);
    expect(t.takeStorable([1])).toEqual([{ topic: 'in', partition: 1, offset: 8 }]);
    t.drop([0]);
    t.delivered(0, 5); // a late report for a revoked partition is ignored
    expect(t.inFlight).toBe(1);
    expect(t.takeStorable(undefined, true)).toEqual([{ topic: 'in', partition: 1, offset: 8 }]);
  });
});
