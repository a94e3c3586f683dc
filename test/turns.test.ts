import { Turns } from '../lib/processor/score/turns';
import { concurrentPredictions } from '../lib/processor/score/score';

/** A promise with its resolve and reject at hand. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('prediction turns', () => {
  it('lets in at most the limit at once, and the waiters in the order they asked', async () => {
    const turns = new Turns(2);
    const started: number[] = [];
    const gates = [0, 1, 2, 3, 4].map(() => deferred());
    const runs = gates.map((g, i) => turns.run(async () => {
      started.push(i);
      await g.promise;
      return i * 10;
    }));
    await turn();
    expect(started).toEqual([0, 1]);
    gates[1].resolve();
    await turn();
    expect(started).toEqual([0, 1, 2]);
    gates[0].resolve();
    await turn();
    expect(started).toEqual([0, 1, 2, 3]);
    gates[2].resolve();
    gates[3].resolve();
    gates[4].resolve();
    expect(await Promise.all(runs)).toEqual([0, 10, 20, 30, 40]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
  });

  it('gives the turn back when the work fails', async () => {
    const turns = new Turns(1);
    await expect(turns.run(async () => { throw new Error('prediction failed'); })).rejects.toThrow('prediction failed');
    expect(await turns.run(async () => 'next')).toBe('next');
  });

  it('refuses a limit below 1', () => {
    expect(() => new Turns(0)).toThrow('turns need a limit of at least 1, got 0');
  });

  it.each([
    [1, 2, 2], [1, 1, 1], [1, 16, 2], [2, 2, 1], [2, 8, 2], [4, 2, 1], [0, 2, 1], [0, 16, 1],
  ])('with --nthread %i on %i cores, predicts %i batch(es) at once', (nthread, cores, expected) => {
    expect(concurrentPredictions(nthread, cores)).toBe(expected);
  });
});
