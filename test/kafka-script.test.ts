/**
 * The command-line contract of scripts/kafka.sh that the jest setup, the demo and the benchmarks parse.
 * Only the cheap paths: the broker itself is exercised by the processor's integration tests.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const script = path.resolve(__dirname, '..', 'scripts', 'kafka.sh');

function kafkaSh(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync('bash', [script, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('scripts/kafka.sh', () => {
  it('status prints one line, "running <address> (pid N)" or "stopped", and exits 0 either way', () => {
    const { code, stdout } = kafkaSh(['status']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^(running 127\.0\.0\.1:\d+ \(pid \d+(, still starting)?\)|stopped)\n$/);
  });

  it('stop with a bootstrap address leaves that cluster, and the local broker, alone', () => {
    const before = kafkaSh(['status']).stdout;
    const { code, stdout, stderr } = kafkaSh(['stop', '127.0.0.1:1']);
    expect(code).toBe(0);
    expect(stdout).toBe('');
    expect(stderr).toContain('leaving 127.0.0.1:1 alone');
    expect(kafkaSh(['status']).stdout).toBe(before);
  });

  it('refuses a bootstrap address that is not host:port', () => {
    const { code, stdout, stderr } = kafkaSh(['start', 'localhost']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe("kafka: 'localhost' is not a bootstrap address (host:port[,host:port...])\n");
  });

  it('refuses a KAFKA_PORT that is not a port number', () => {
    const { code, stderr } = kafkaSh(['status'], { KAFKA_PORT: '90920' });
    expect(code).toBe(2);
    expect(stderr).toBe("kafka: KAFKA_PORT must be a port number, got '90920'\n");
  });

  it('prints its usage on stderr and exits 2 for an unknown command', () => {
    const { code, stdout, stderr } = kafkaSh(['restart']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^Usage: scripts\/kafka\.sh start/);
  });
});
