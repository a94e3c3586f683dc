import { OffsetTracker } from '../lib/processor/partitions/ledger';

const at = (partition: number, ...offsets: number[]) => offsets.map((offset) => ({ partition, offset }));

describe('offset tracker', () => {
  it('stores a partition only up to its first undelivered record', () => {
    const t = new OffsetTracker('in');
    const b = t.add(at(0, 10, 11, 12, 13));
    t.delivered(b, 1);
    t.delivered(b, 3);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(b, 0);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 12 }]);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(b, 2);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 14 }]);
    expect(t.inFlight).toBe(0);
  });

  it('advances across batches only in consumption order', () => {
    const t = new OffsetTracker('in');
    const first = t.add(at(0, 0, 1));
    const second = t.add(at(0, 2, 3));
    t.delivered(second, 0);
    t.delivered(second, 1);
    expect(t.takeStorable()).toEqual([]);
    expect(t.pending()).toBe(2);
    t.delivered(first, 1);
    t.delivered(first, 0);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 4 }]);
    expect(t.pending()).toBe(0);
  });

  it('follows the offsets a batch really had, gaps included', () => {
    const t = new OffsetTracker('in');
    // Offsets 5 and 6 are missing, as after compaction or a transaction marker.
    const b = t.add(at(0, 3, 4, 7));
    t.delivered(b, 0);
    t.delivered(b, 1);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 5 }]);
    t.delivered(b, 2);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 8 }]);
  });

  it('counts a repeated report for a row once', () => {
    const t = new OffsetTracker('in');
    const b = t.add(at(3, 0, 1));
    t.delivered(b, 0);
    t.delivered(b, 0);
    expect(t.pending()).toBe(1);
    expect(t.inFlight).toBe(1);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 3, offset: 1 }]);
  });

  it('never stores past a failed output', () => {
    const t = new OffsetTracker('in');
    const b = t.add(at(0, 0, 1, 2));
    t.delivered(b, 0);
    t.failed(b, 1);
    t.delivered(b, 2);
    expect(t.hasFailure).toBe(true);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 1 }]);
    expect(t.pending()).toBe(1);
  });

  it('keeps the partitions of one batch apart and forgets dropped ones', () => {
    const t = new OffsetTracker('in');
    const b = t.add([{ partition: 0, offset: 5 }, { partition: 1, offset: 7 }, { partition: 1, offset: 8 }]);
    t.delivered(b, 1);
    expect(t.pending([0])).toBe(1);
    expect(t.pending([1])).toBe(1);
    expect(t.takeStorable([1])).toEqual([{ topic: 'in', partition: 1, offset: 8 }]);
    t.drop([0]);
    t.delivered(b, 0); // a late report for a revoked partition is ignored
    expect(t.inFlight).toBe(1);
    expect(t.takeStorable(undefined, true)).toEqual([{ topic: 'in', partition: 1, offset: 8 }]);
  });

  it('gives, per partition of a batch, the offset after its last record', () => {
    const t = new OffsetTracker('in');
    const b = t.add([{ partition: 1, offset: 7 }, { partition: 0, offset: 3 }, { partition: 1, offset: 9 }]);
    expect(t.endOffsets(b)).toEqual([[1, 10], [0, 4]]);
  });

  it('starts a partition afresh when it is assigned again after a drop', () => {
    const t = new OffsetTracker('in');
    const before = t.add(at(0, 10));
    t.drop([0]);
    const after = t.add(at(0, 4));
    t.delivered(before, 0);
    expect(t.takeStorable()).toEqual([]);
    t.delivered(after, 0);
    expect(t.takeStorable()).toEqual([{ topic: 'in', partition: 0, offset: 5 }]);
    expect(t.inFlight).toBe(0);
  });
});
