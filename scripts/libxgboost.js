#!/usr/bin/env node
/*
 * Puts the pinned libxgboost where the native build finds it: .libxgboost/<version>/ in the package.
 *
 * Runs as the first half of `npm install` (before cmake-js), so it is plain JavaScript with no
 * dependencies. It takes two files of the xgboost release from PyPI and checks each against the
 * SHA-256 pinned in scripts/xgboost-version.json (the one place the pinned release is written):
 *   - the `xgboost-cpu` wheel, which holds the built libxgboost.so (and the libgomp it needs): the
 *     very file that the trainer's Python installs, so Node and Python run the same library;
 *   - the `xgboost` source archive, for include/xgboost/c_api.h, which the wheel does not carry.
 * Layout: .libxgboost/<version>/{xgboost/lib/libxgboost.so, xgboost_cpu.libs/, include/xgboost/c_api.h}
 * and .libxgboost/wheels/<the wheel>, which scripts/setup.sh installs into the trainer's venv. When
 * the library names a SONAME (3.3 and later: libxgboost.so.3), a link of that name sits beside it,
 * because the addon records the SONAME and the dynamic loader looks for that file name.
 *
 * Usage: node scripts/libxgboost.js [--print-prefix]
 *   XGBOOST_ROOT=/prefix    use that libxgboost instead (its include/ and lib/); nothing is fetched
 *   PIP_INDEX_URL=url       a PyPI mirror's simple index (default https://pypi.org/simple)
 */
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const PIN = require('./xgboost-version.json');
const VERSION = PIN.version;
/** The wheels of the release per Node platform-arch, with the SHA-256 that PyPI lists for them. */
const WHEELS = Object.fromEntries(Object.entries(PIN.wheels).map(([platform, w]) => [platform, [w.file, w.sha256]]));
const SDIST = [PIN.sdist.file, PIN.sdist.sha256];
const HEADER_IN_SDIST = `xgboost-${VERSION}/cpp_src/include/xgboost/c_api.h`;

const ROOT = path.resolve(__dirname, '..');
const PREFIX = path.join(ROOT, '.libxgboost', VERSION);
const WHEEL_DIR = path.join(ROOT, '.libxgboost', 'wheels');
const STAMP = path.join(PREFIX, '.complete');

function fail(message) {
  process.stderr.write(`libxgboost: ${message}\n`);
  process.exit(1);
}

/** The index page of a project: PEP 691 JSON where the index speaks it, else PEP 503 HTML. */
async function releaseFiles(project) {
  const index = (process.env.PIP_INDEX_URL || 'https://pypi.org/simple').replace(/\/+$/, '');
  const url = `${index}/${project}/`;
  const res = await fetch(url, { headers: { Accept: 'application/vnd.pypi.simple.v1+json, text/html;q=0.1' } });
  if (!res.ok) throw new Error(`${url} answered ${res.status} ${res.statusText}`);
  const body = await res.text();
  if ((res.headers.get('content-type') || '').includes('json')) {
    return JSON.parse(body).files.map((f) => ({ name: f.filename, url: new URL(f.url, url).href }));
  }
  const files = [];
  for (const m of body.matchAll(/<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)<\/a>/g)) {
    files.push({ name: m[2].trim(), url: new URL(m[1].replace(/&amp;/g, '&'), url).href });
  }
  return files;
}

/** Downloads one release file of `project` and checks it against the pinned digest. */
async function download(project, [name, sha256]) {
  const file = (await releaseFiles(project)).find((f) => f.name === name);
  if (!file) throw new Error(`${name} is not on the index page of ${project}`);
  const res = await fetch(file.url);
  if (!res.ok) throw new Error(`${file.url} answered ${res.status} ${res.statusText}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const actual = crypto.createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) throw new Error(`${name} has SHA-256 ${actual}, expected ${sha256}`);
  return bytes;
}

/**
 * Where fetched release files are kept between installs: under npm's own cache, as sharp keeps its
 * libvips there, so that installing the package again (another project, a packed tarball in a test)
 * reads them instead of fetching them. A kept file is checked against its pinned digest like a
 * fetched one.
 */
const CACHE_DIR = path.join(process.env.npm_config_cache || path.join(os.homedir(), '.npm'), '_xgb-stream');

/** A release file of `project`: from the cache when it holds the pinned bytes, else from the index (and kept). */
async function releaseFile(project, [name, sha256]) {
  const kept = path.join(CACHE_DIR, name);
  if (fs.existsSync(kept)) {
    const bytes = fs.readFileSync(kept);
    if (crypto.createHash('sha256').update(bytes).digest('hex') === sha256) return bytes;
  }
  const bytes = await download(project, [name, sha256]);
  try {
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    fs.writeFileSync(`${kept}.${process.pid}`, bytes);
    fs.renameSync(`${kept}.${process.pid}`, kept);
  } catch {
    // A cache that cannot be written only costs the next install a fetch.
  }
  return bytes;
}

/** Writes every file of a zip archive (a wheel) under `dest`, reading its central directory. */
function extractZip(zip, dest) {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip archive: no end of central directory');
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const mode = zip.readUInt32LE(at + 38) >>> 16;
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    const target = path.resolve(dest, name);
    if (!target.startsWith(dest + path.sep)) throw new Error(`zip entry ${name} leaves the folder`);
    if (name.endsWith('/')) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + compressed);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, method === 0 ? data : zlib.inflateRawSync(data));
    if (mode & 0o111) fs.chmodSync(target, 0o755);
  }
}

/** The bytes of one member of a .tar.gz archive. */
function readFromTarGz(archive, member) {
  const tar = zlib.gunzipSync(archive);
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from, length) => header.toString('utf8', from, from + length).replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (name === member) return tar.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${member} is not in the archive`);
}

/**
 * The DT_SONAME of a 64-bit little-endian ELF shared library (what a program linked against it asks
 * the dynamic loader for), or undefined when it names none.
 */
function elfSoname(elf) {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return undefined;
  const sectionsAt = Number(elf.readBigUInt64LE(0x28));
  const sectionSize = elf.readUInt16LE(0x3a);
  const sections = elf.readUInt16LE(0x3c);
  const section = (i) => sectionsAt + i * sectionSize;
  for (let i = 0; i < sections; i++) {
    if (elf.readUInt32LE(section(i) + 4) !== 6) continue; // SHT_DYNAMIC
    const at = Number(elf.readBigUInt64LE(section(i) + 0x18));
    const size = Number(elf.readBigUInt64LE(section(i) + 0x20));
    const strings = Number(elf.readBigUInt64LE(section(elf.readUInt32LE(section(i) + 0x28)) + 0x18));
    for (let e = at; e < at + size; e += 16) {
      const tag = elf.readBigUInt64LE(e);
      if (tag === 0n) break;
      if (tag === 14n) { // DT_SONAME
        const name = strings + Number(elf.readBigUInt64LE(e + 8));
        return elf.toString('latin1', name, elf.indexOf(0, name));
      }
    }
  }
  return undefined;
}

/** Puts a link named after the library's SONAME beside it, so that the loader finds it by that name. */
function linkSoname(libDir) {
  const library = path.join(libDir, 'libxgboost.so');
  const soname = elfSoname(fs.readFileSync(library));
  if (!soname || soname === 'libxgboost.so') return;
  fs.rmSync(path.join(libDir, soname), { force: true });
  fs.symlinkSync('libxgboost.so', path.join(libDir, soname));
}

async function main() {
  if (process.env.XGBOOST_ROOT) {
    if (process.argv.includes('--print-prefix')) process.stdout.write(`${process.env.XGBOOST_ROOT}\n`);
    else process.stdout.write(`libxgboost: using XGBOOST_ROOT=${process.env.XGBOOST_ROOT}\n`);
    return;
  }
  const platform = `${process.platform}-${process.arch}`;
  const wheel = WHEELS[platform];
  if (!wheel) {
    fail(`no pinned libxgboost ${VERSION} build for ${platform}: build xgboost ${VERSION} ` +
      '(its CMake install gives include/ and lib/) and set XGBOOST_ROOT to its prefix');
  }
  const stamp = `${wheel[1]} ${SDIST[1]}\n`;
  if (fs.existsSync(STAMP) && fs.readFileSync(STAMP, 'utf8') === stamp) {
    if (process.argv.includes('--print-prefix')) process.stdout.write(`${PREFIX}\n`);
    return;
  }
  const started = Date.now();
  process.stderr.write(`libxgboost: xgboost ${VERSION} (${wheel[0]} and ${SDIST[0]}) from ${CACHE_DIR}, else the package index\n`);
  let wheelBytes;
  let sdistBytes;
  try {
    [wheelBytes, sdistBytes] = await Promise.all([releaseFile('xgboost-cpu', wheel), releaseFile('xgboost', SDIST)]);
  } catch (err) {
    fail(`cannot fetch xgboost ${VERSION} from the package index: ${err.message}. ` +
      'Set PIP_INDEX_URL to a reachable mirror, or XGBOOST_ROOT to an installed libxgboost');
  }
  fs.rmSync(PREFIX, { recursive: true, force: true });
  fs.mkdirSync(PREFIX, { recursive: true });
  extractZip(wheelBytes, PREFIX);
  linkSoname(path.join(PREFIX, 'xgboost', 'lib'));
  const header = path.join(PREFIX, 'include', 'xgboost', 'c_api.h');
  fs.mkdirSync(path.dirname(header), { recursive: true });
  fs.writeFileSync(header, readFromTarGz(sdistBytes, HEADER_IN_SDIST));
  fs.mkdirSync(WHEEL_DIR, { recursive: true });
  fs.writeFileSync(path.join(WHEEL_DIR, wheel[0]), wheelBytes);
  fs.writeFileSync(STAMP, stamp);
  process.stderr.write(`libxgboost: ${path.relative(ROOT, PREFIX)} ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  if (process.argv.includes('--print-prefix')) process.stdout.write(`${PREFIX}\n`);
}

main().catch((err) => fail(err.stack || String(err)));
