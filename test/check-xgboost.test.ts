/**
 * The release check's reading of a package index (scripts/check-xgboost.ts), on index pages written
 * here: which files are releases, which release is newest, and the pin file it proposes. No network:
 * `npm run check-xgboost` itself asks PyPI.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  compareReleases, indexFiles, moveSteps, newestRelease, parseRelease, pinFor, releaseOfFile, type IndexFile, type Pin,
} from '../scripts/check-xgboost';

const PIN: Pin = JSON.parse(readFileSync(path.join(__dirname, '..', 'scripts', 'xgboost-version.json'), 'utf8'));

const file = (filename: string, sha256 = 'a'.repeat(64), yanked = false): IndexFile => ({ filename, sha256, yanked });

describe('release versions', () => {
  it('parses final releases and nothing else', () => {
    expect(parseRelease('3.4.1')).toEqual([3, 4, 1]);
    expect(parseRelease('3.10.0')).toEqual([3, 10, 0]);
    expect(parseRelease('2.0')).toEqual([2, 0]);
    for (const other of ['3.1.0rc1', '3.0.0b2', '2.0.0a1', '3.4.1.dev0', '3.4.1+local', 'latest', '', '3..1']) {
      expect(parseRelease(other)).toBeUndefined();
    }
  });

  it('orders them numerically, a missing part counting as 0', () => {
    expect(compareReleases([3, 10, 0], [3, 9, 9])).toBeGreaterThan(0);
    expect(compareReleases([3, 4, 1], [3, 4, 1])).toBe(0);
    expect(compareReleases([3, 4], [3, 4, 0])).toBe(0);
    expect(compareReleases([3, 3, 0], [3, 4, 1])).toBeLessThan(0);
    expect(compareReleases([4, 0, 0], [3, 99, 99])).toBeGreaterThan(0);
  });

  it('reads the release of wheels and source archives of the project only', () => {
    expect(releaseOfFile('xgboost_cpu-3.4.1-py3-none-manylinux_2_28_x86_64.whl', 'xgboost-cpu')).toBe('3.4.1');
    expect(releaseOfFile('xgboost_cpu-3.4.1.tar.gz', 'xgboost-cpu')).toBe('3.4.1');
    expect(releaseOfFile('xgboost-cpu-2.0.0.tar.gz', 'xgboost-cpu')).toBe('2.0.0');
    expect(releaseOfFile('xgboost-3.4.1.tar.gz', 'xgboost')).toBe('3.4.1');
    expect(releaseOfFile('xgboost-3.4.1.tar.gz', 'xgboost-cpu')).toBeUndefined();
    expect(releaseOfFile('xgboost_cpu-3.4.1.zip', 'xgboost-cpu')).toBeUndefined();
  });
});

describe('the newest release on an index page', () => {
  it('is the highest final release, numerically, with a file that is not yanked', () => {
    const files = indexFiles({
      files: [
        { filename: 'xgboost_cpu-3.9.0-py3-none-manylinux_2_28_x86_64.whl', hashes: { sha256: 'b'.repeat(64) } },
        { filename: 'xgboost_cpu-3.10.0-py3-none-manylinux_2_28_x86_64.whl', hashes: { sha256: 'c'.repeat(64) } },
        { filename: 'xgboost_cpu-3.11.0rc1-py3-none-manylinux_2_28_x86_64.whl', hashes: { sha256: 'd'.repeat(64) } },
        { filename: 'xgboost_cpu-3.12.0.tar.gz', hashes: { sha256: 'e'.repeat(64) }, yanked: 'broken build' },
      ],
    });
    expect(files[3]).toEqual({ filename: 'xgboost_cpu-3.12.0.tar.gz', sha256: 'e'.repeat(64), yanked: true });
    expect(newestRelease(files, 'xgboost-cpu')).toBe('3.10.0');
  });

  it('is undefined when the page lists no final release', () => {
    expect(newestRelease([file('xgboost_cpu-4.0.0rc1.tar.gz')], 'xgboost-cpu')).toBeUndefined();
    expect(newestRelease([], 'xgboost-cpu')).toBeUndefined();
  });

  it('needs a PEP 691 page', () => {
    expect(() => indexFiles({ meta: {} })).toThrow(new Error('the index page has no "files" list (not PEP 691 JSON)'));
  });
});

describe('the pin it proposes', () => {
  const cpu = [
    file('xgboost_cpu-3.5.0-py3-none-manylinux_2_28_x86_64.whl', '1'.repeat(64)),
    file('xgboost_cpu-3.5.0-py3-none-manylinux_2_28_aarch64.whl', '2'.repeat(64)),
    file('xgboost_cpu-3.5.0-py3-none-win_amd64.whl', '3'.repeat(64)),
  ];
  const sdist = [file('xgboost-3.5.0.tar.gz', '4'.repeat(64))];

  it('takes the wheel of each pinned platform and the source archive, with their digests', () => {
    expect(pinFor('3.5.0', PIN, cpu, sdist)).toEqual({
      version: '3.5.0',
      wheels: {
        'linux-x64': { file: 'xgboost_cpu-3.5.0-py3-none-manylinux_2_28_x86_64.whl', sha256: '1'.repeat(64) },
        'linux-arm64': { file: 'xgboost_cpu-3.5.0-py3-none-manylinux_2_28_aarch64.whl', sha256: '2'.repeat(64) },
      },
      sdist: { file: 'xgboost-3.5.0.tar.gz', sha256: '4'.repeat(64) },
    });
  });

  it('names the file the index lacks', () => {
    expect(() => pinFor('3.5.0', PIN, cpu.slice(1), sdist))
      .toThrow(new Error('xgboost_cpu-3.5.0-py3-none-manylinux_2_28_x86_64.whl is not on the index with a SHA-256'));
    expect(() => pinFor('3.5.0', PIN, cpu, []))
      .toThrow(new Error('xgboost-3.5.0.tar.gz is not on the index with a SHA-256'));
  });

  it('comes with the steps to move the pin, naming both releases', () => {
    const steps = moveSteps('3.4.1', '3.5.0', '{\n  "version": "3.5.0"\n}');
    expect(steps.split('\n')[0]).toBe('The pin is xgboost 3.4.1; the newest xgboost-cpu on the index is 3.5.0. To move the pin:');
    expect(steps).toContain('\n     {\n       "version": "3.5.0"\n     }\n');
    expect(steps).toContain('2. Keep 3.4.1 in the version matrix as a release of its own');
    expect(steps).toContain('3. bash scripts/setup.sh: fetches libxgboost 3.5.0');
  });
});
