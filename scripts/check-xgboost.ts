/**
 * `npm run check-xgboost`: asks the package index for the newest xgboost-cpu release and says whether
 * the pinned one (scripts/xgboost-version.json) is current; if not, it prints the new pin file, with
 * the SHA-256 digests the index lists, and the steps to move the pin. Needs the network, so it is not
 * part of `npm test`.
 *
 * Exit status: 0 when the pin is the newest release, 1 when a newer one is out, 2 for a bad flag,
 * 3 when the index cannot be asked or read.
 *   PIP_INDEX_URL=url   a PyPI mirror's simple index (default https://pypi.org/simple), as for the build
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const PIN_FILE = path.join(ROOT, 'scripts', 'xgboost-version.json');

/** scripts/xgboost-version.json. */
export interface Pin {
  version: string;
  wheels: Record<string, { file: string; sha256: string }>;
  sdist: { file: string; sha256: string };
}

/** One file of a project's index page (PEP 691 JSON). */
export interface IndexFile {
  readonly filename: string;
  readonly sha256: string | undefined;
  readonly yanked: boolean;
}

/** The wheel tag each Node platform of the pin takes (the manylinux builds the pin is made of). */
const WHEEL_PLATFORMS: Readonly<Record<string, string>> = {
  'linux-x64': 'manylinux_2_28_x86_64',
  'linux-arm64': 'manylinux_2_28_aarch64',
};

/**
 * The numeric parts of a final release ("3.4.1" -> [3, 4, 1]); undefined for anything else:
 * pre-releases (3.1.0rc1), development and local versions, which are never pinned.
 */
export function parseRelease(version: string): number[] | undefined {
  if (!/^\d+(\.\d+){0,3}$/.test(version)) return undefined;
  return version.split('.').map(Number);
}

/** Orders two final releases numerically, missing parts as 0: negative when a is older than b. */
export function compareReleases(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The release a distribution file belongs to: `<name>-<version>-<tags>.whl` or `<name>-<version>.tar.gz`
 * (names normalised with underscores, as PyPI stores them); undefined for other files.
 */
export function releaseOfFile(filename: string, project: string): string | undefined {
  const name = project.replace(/[-.]+/g, '_').toLowerCase();
  const lower = filename.toLowerCase();
  let rest: string;
  if (lower.startsWith(`${name}-`)) rest = filename.slice(name.length + 1);
  else if (lower.startsWith(`${project.toLowerCase()}-`)) rest = filename.slice(project.length + 1);
  else return undefined;
  if (rest.endsWith('.whl')) return rest.split('-')[0];
  if (rest.endsWith('.tar.gz')) return rest.slice(0, -'.tar.gz'.length);
  return undefined;
}

/** The newest final release with at least one file that is not yanked; undefined when there is none. */
export function newestRelease(files: readonly IndexFile[], project: string): string | undefined {
  let newest: { version: string; parts: number[] } | undefined;
  for (const f of files) {
    if (f.yanked) continue;
    const version = releaseOfFile(f.filename, project);
    const parts = version === undefined ? undefined : parseRelease(version);
    if (version === undefined || parts === undefined) continue;
    if (newest === undefined || compareReleases(parts, newest.parts) > 0) newest = { version, parts };
  }
  return newest?.version;
}

/** The files of an index page in PEP 691 JSON. */
export function indexFiles(page: unknown): IndexFile[] {
  const files = (page as { files?: unknown })?.files;
  if (!Array.isArray(files)) throw new Error('the index page has no "files" list (not PEP 691 JSON)');
  return files.map((f: { filename?: unknown; hashes?: { sha256?: unknown }; yanked?: unknown }) => ({
    filename: String(f.filename),
    sha256: typeof f.hashes?.sha256 === 'string' ? f.hashes.sha256 : undefined,
    yanked: f.yanked !== undefined && f.yanked !== false,
  }));
}

/**
 * The pin file for `version`: the xgboost-cpu wheel of each platform the current pin covers and the
 * xgboost source archive, with their digests. Throws, naming the file, when the index lacks one.
 */
export function pinFor(version: string, current: Pin, cpuFiles: readonly IndexFile[], sdistFiles: readonly IndexFile[]): Pin {
  const find = (files: readonly IndexFile[], filename: string): { file: string; sha256: string } => {
    const f = files.find((x) => x.filename === filename && !x.yanked);
    if (f === undefined || f.sha256 === undefined) throw new Error(`${filename} is not on the index with a SHA-256`);
    return { file: f.filename, sha256: f.sha256 };
  };
  const wheels: Pin['wheels'] = {};
  for (const platform of Object.keys(current.wheels)) {
    const tag = WHEEL_PLATFORMS[platform];
    if (tag === undefined) throw new Error(`no wheel tag known for the pinned platform ${platform}`);
    wheels[platform] = find(cpuFiles, `xgboost_cpu-${version}-py3-none-${tag}.whl`);
  }
  return { version, wheels, sdist: find(sdistFiles, `xgboost-${version}.tar.gz`) };
}

/** What to do to move the pin from `pinned` to `newest`, given the new pin file's text. */
export function moveSteps(pinned: string, newest: string, pinText: string): string {
  return [
    `The pin is xgboost ${pinned}; the newest xgboost-cpu on the index is ${newest}. To move the pin:`,
    '',
    `1. Replace scripts/xgboost-version.json's "version", "wheels" and "sdist" with (digests as the index lists them):`,
    '',
    pinText.split('\n').map((l) => `     ${l}`).join('\n'),
    '',
    `2. Keep ${pinned} in the version matrix as a release of its own: give it a venv in`,
    '   scripts/xgboost-venv.sh (Python ≥ 3.12 from 3.3 on), add it to scripts/matrix/build.sh\'s',
    `   releases and to RELEASES in test/model-versions.test.ts, and add ${newest} to both lists.`,
    `3. bash scripts/setup.sh: fetches libxgboost ${newest}, rebuilds the addon and remakes the trainer's venv.`,
    '4. npm test. The trainer test holds the held-out figures of the default seed to the last digit:',
    '   check what changed against the release notes, then update them and the README\'s model card.',
    '5. npm run bench:classifier and npm run bench, before and after; update the README\'s figures.',
  ].join('\n');
}

async function indexPage(project: string): Promise<unknown> {
  const index = (process.env.PIP_INDEX_URL || 'https://pypi.org/simple').replace(/\/+$/, '');
  const url = `${index}/${project}/`;
  const res = await fetch(url, { headers: { Accept: 'application/vnd.pypi.simple.v1+json' } });
  if (!res.ok) throw new Error(`${url} answered ${res.status} ${res.statusText}`);
  if (!(res.headers.get('content-type') ?? '').includes('json')) {
    throw new Error(`${url} did not answer in PEP 691 JSON; set PIP_INDEX_URL to an index that does`);
  }
  return res.json();
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write('Usage: npm run check-xgboost\n\nSays whether the pinned xgboost release ' +
      '(scripts/xgboost-version.json) is the newest xgboost-cpu on PyPI (or PIP_INDEX_URL), and if not,\n' +
      'the new pin file and the steps to move the pin. Exit status 0: current; 1: a newer release is out.\n');
    return 0;
  }
  if (args.length > 0) {
    process.stderr.write(`check-xgboost: unknown argument '${args[0]}' (it takes none; see --help)\n`);
    return 2;
  }
  const pin = JSON.parse(readFileSync(PIN_FILE, 'utf8')) as Pin;
  let cpuFiles: IndexFile[];
  let sdistFiles: IndexFile[];
  try {
    [cpuFiles, sdistFiles] = (await Promise.all([indexPage('xgboost-cpu'), indexPage('xgboost')])).map(indexFiles);
  } catch (err) {
    process.stderr.write(`check-xgboost: cannot ask the package index: ${(err as Error).message}\n`);
    return 3;
  }
  const newest = newestRelease(cpuFiles, 'xgboost-cpu');
  if (newest === undefined) {
    process.stderr.write('check-xgboost: the index lists no final release of xgboost-cpu\n');
    return 3;
  }
  const order = compareReleases(parseRelease(newest)!, parseRelease(pin.version)!);
  if (order <= 0) {
    process.stdout.write(`xgboost ${pin.version} is pinned (scripts/xgboost-version.json) and ` +
      `${newest} is the newest xgboost-cpu release on the index: the pin is current.\n`);
    return 0;
  }
  let next: Pin;
  try {
    next = pinFor(newest, pin, cpuFiles, sdistFiles);
  } catch (err) {
    process.stdout.write(`The pin is xgboost ${pin.version}; xgboost-cpu ${newest} is out, but ` +
      `${(err as Error).message}: wait for the release's files before moving the pin.\n`);
    return 1;
  }
  const { version, wheels, sdist } = next;
  process.stdout.write(moveSteps(pin.version, newest, JSON.stringify({ version, wheels, sdist }, null, 2)) + '\n');
  return 1;
}

// Run as a program (node scripts/run-ts.js sets argv[1] to this file), not when a test imports it.
if (process.argv[1] === __filename) {
  main().then((code) => { process.exitCode = code; }, (err) => {
    process.stderr.write(`check-xgboost: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 3;
  });
}
