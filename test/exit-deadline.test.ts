/**
 * The exit deadline (lib/exit.ts, native/exit_deadline.cc). process.exit() joins every thread of
 * libuv's pool; here one of them is held in open(2) on a FIFO that nobody writes, as a librdkafka call
 * that never returns would hold it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { EXIT_GRACE_MS, armExitDeadline } from '../lib/exit';
import { ROOT } from './helpers/kafka';

const LINE = '{"level":"warn","message":"exit deadline reached"}\n';

/** A child that blocks a pool thread (or not), arms the deadline (or not), then exits with status 3. */
const CHILD = `
const fs = require('node:fs');
const { armExitDeadline } = require(${JSON.stringify(path.join(ROOT, 'dist', 'exit.js'))});
if (process.env.BLOCK === '1') fs.open(process.env.FIFO, 'r', () => {});
setTimeout(() => {
  if (process.env.ARM === '1') armExitDeadline(3, ${JSON.stringify(LINE)});
  process.stdout.write('exiting\\n');
  process.exit(3);
}, 200);
`;

let dir: string;
let fifo: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'exit-deadline-'));
  fifo = path.join(dir, 'never-written');
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  /** The exit status, or 'running' when the child was still there `waitMs` after it asked to exit. */
  outcome: number | null | 'running';
  /** From the child's "exiting" to its end. */
  exitTookMs: number;
  stderr: string;
}

function run(env: { BLOCK: '0' | '1'; ARM: '0' | '1' }, waitMs: number): Promise<Run> {
  const child = spawn(process.execPath, ['-e', CHILD], { env: { ...process.env, ...env, FIFO: fifo } });
  let stderr = '';
  let exitingAt = 0;
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('exiting')) exitingAt = Date.now(); });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ outcome: 'running', exitTookMs: Date.now() - exitingAt, stderr });
    }, waitMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ outcome: code, exitTookMs: Date.now() - exitingAt, stderr });
    });
  });
}

describe('the exit deadline', () => {
  it('is needed: a process whose pool has a thread that never returns does not exit', async () => {
    const r = await run({ BLOCK: '1', ARM: '0' }, 2_000 + EXIT_GRACE_MS);
    expect(r.outcome).toBe('running');
  });

  it(`ends such a process with the armed status after ${EXIT_GRACE_MS} ms, and writes the line`, async () => {
    const r = await run({ BLOCK: '1', ARM: '1' }, 10_000 + EXIT_GRACE_MS);
    expect(r).toEqual({ outcome: 3, exitTookMs: expect.any(Number), stderr: LINE });
    expect(r.exitTookMs).toBeGreaterThanOrEqual(EXIT_GRACE_MS - 250);
  });

  it('stays silent when the exit completes by itself', async () => {
    const r = await run({ BLOCK: '0', ARM: '1' }, 10_000);
    expect(r).toEqual({ outcome: 3, exitTookMs: expect.any(Number), stderr: '' });
  });

  it('refuses a status that is not an exit status', () => {
    expect(() => armExitDeadline(256, LINE)).toThrow(new RangeError('exit status 256 is not 0-255'));
    expect(() => armExitDeadline(1.5, LINE)).toThrow(new RangeError('exit status 1.5 is not 0-255'));
  });
});
