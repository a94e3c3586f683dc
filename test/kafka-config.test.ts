/**
 * `--kafka-config FILE`: the Java properties format, how the file, KAFKA_PROPERTIES and -X combine,
 * librdkafka's checks naming the file and line, and secrets kept out of every output: error messages,
 * log lines, --help, /metrics, a whole processor run against the broker, and the replay tool.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, isSecretProperty, parseConfig, redact, type ProcessorConfig } from '../lib/config';
import { parseProperties } from '../lib/kafka-config-file';
import { createLogger } from '../lib/log';
import { freePort, get, sample } from './helpers/http';
import { CLI, ProcessorProcess, brokers, createTopicSet, runCli, topicFlags } from './helpers/kafka';
import { spawn } from 'node:child_process';

const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-kafka-config-'));
let files = 0;

/** Writes a properties file, mode 600 unless told otherwise, and returns its path. */
function propertiesFile(text: string, mode = 0o600): string {
  const file = path.join(dir, `client-${++files}.properties`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

function run(argv: string[], env: Record<string, string> = {}): { config: ProcessorConfig; warnings: readonly string[] } {
  const r = parseConfig(argv, env);
  if (r.kind !== 'run') throw new Error(`expected a run configuration, got ${r.kind}`);
  return r;
}

function error(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('the properties format', () => {
  it('takes =, : and blank separators, with the blanks around them dropped', () => {
    expect(parseProperties('a=1\nb = 2\n  c:3\nd : 4\ne 5\nf\t\t6\ng=\nh\n')).toEqual([
      { key: 'a', value: '1', line: 1 }, { key: 'b', value: '2', line: 2 }, { key: 'c', value: '3', line: 3 },
      { key: 'd', value: '4', line: 4 }, { key: 'e', value: '5', line: 5 }, { key: 'f', value: '6', line: 6 },
      { key: 'g', value: '', line: 7 }, { key: 'h', value: '', line: 8 },
    ]);
  });

  it('keeps separators after the first one in the value, and trailing blanks', () => {
    expect(parseProperties('sasl.password = a=b:c d \n')).toEqual([{ key: 'sasl.password', value: 'a=b:c d ', line: 1 }]);
  });

  it('skips # and ! comments and blank lines, counting their lines', () => {
    expect(parseProperties('# a comment\n\n   ! another\n\t\nk=v # not a comment\r\nx=y\r')).toEqual([
      { key: 'k', value: 'v # not a comment', line: 5 }, { key: 'x', value: 'y', line: 6 },
    ]);
  });

  it('joins continued lines, dropping the next line\'s leading blanks, and names the first line', () => {
    expect(parseProperties('one=1\nsasl.jaas.config=first \\\n    second \\\n\tthird\nafter=2\n')).toEqual([
      { key: 'one', value: '1', line: 1 },
      { key: 'sasl.jaas.config', value: 'first second third', line: 2 },
      { key: 'after', value: '2', line: 5 },
    ]);
  });

  it('does not continue a line ending in an escaped backslash, nor a comment line', () => {
    expect(parseProperties('path=C:\\\\dir\\\\\nnext=1\n# comment \\\nk=v')).toEqual([
      { key: 'path', value: 'C:\\dir\\', line: 1 }, { key: 'next', value: '1', line: 2 }, { key: 'k', value: 'v', line: 4 },
    ]);
  });

  it('reads escapes: \\t \\n \\r \\f \\uXXXX, and an escaped separator in a key', () => {
    expect(parseProperties('a\\=b\\:c\\ d=x\\ty\\nz\\r\\f\\u00e9\\u20AC\\q\\#')).toEqual([
      { key: 'a=b:c d', value: 'x\ty\nz\r\f\u00e9\u20ac' + 'q#', line: 1 },
    ]);
  });

  it('rejects a malformed \\u escape and a line with no name', () => {
    expect(() => parseProperties('a=1\nb=\\u12G4')).toThrow("malformed \\u escape '\\u12G4'");
    expect(() => parseProperties('a=1\nb=\\u12G4')).toThrow(expect.objectContaining({ line: 2 }));
    expect(() => parseProperties('\n= value')).toThrow(expect.objectContaining({ line: 2, message: 'no property name before the separator' }));
  });
});

describe('--kafka-config', () => {
  it('reads the file through --kafka-config or KAFKA_CONFIG, under KAFKA_PROPERTIES and -X', () => {
    const file = propertiesFile('linger.ms=7\nclient.rack=a\nsocket.keepalive.enable=true\nsasl.username=u\n');
    const { config, warnings } = run(['--kafka-config', file, '-X', 'client.rack=c'], { KAFKA_PROPERTIES: 'linger.ms=9,client.rack=b' });
    expect(config.kafkaConfigFile).toBe(file);
    expect(config.kafkaProperties).toEqual({
      'linger.ms': '9', 'client.rack': 'c', 'socket.keepalive.enable': 'true', 'sasl.username': 'u',
    });
    expect(warnings).toEqual([]);
    expect(run([], { KAFKA_CONFIG: file }).config.kafkaProperties['client.rack']).toBe('a');
  });

  it('keeps topic-level properties for the topic configuration, as -X ones', () => {
    const file = propertiesFile('acks=1\nmessage.timeout.ms=2000\nauto.offset.reset=latest\n');
    expect(run(['--kafka-config', file]).config.kafkaProperties).toEqual({
      'acks': '1', 'message.timeout.ms': '2000', 'auto.offset.reset': 'latest',
    });
  });

  it('exits 2 naming the file and line of an unknown property', () => {
    const file = propertiesFile('# client settings\nsecurity.protocol=PLAINTEXT\n\nsasl.user=scorer\n');
    expect(error(['--kafka-config', file])).toBe(`${file}:4: No such configuration property: "sasl.user"`);
  });

  it('exits 2 naming the file and line of an invalid value, an alias under its own name', () => {
    expect(error(['--kafka-config', propertiesFile('auto.offset.reset=newest\n')])).toMatch(
      /:1: Invalid value "newest" for configuration property "auto.offset.reset"$/);
    const file = propertiesFile('a.b\\\n  .c=1\nlinger.ms=soon\n');
    expect(error(['--kafka-config', file])).toBe(`${file}:1: No such configuration property: "a.b.c"`);
    const second = propertiesFile('client.id=x\nlinger.ms=soon\n');
    expect(error(['--kafka-config', second])).toBe(
      `${second}:2: Invalid value for configuration property "queue.buffering.max.ms" (given as linger.ms)`);
  });

  it('names -X and KAFKA_PROPERTIES for their own bad properties', () => {
    expect(error(['-X', 'no.such=1'])).toBe('-X: No such configuration property: "no.such"');
    expect(error([], { KAFKA_PROPERTIES: 'enable.idempotence=maybe' })).toBe(
      'KAFKA_PROPERTIES: Expected bool value for "enable.idempotence": true or false');
  });

  it('exits 2 naming a file that cannot be read or parsed', () => {
    const missing = path.join(dir, 'missing.properties');
    expect(error(['--kafka-config', missing])).toBe(`cannot read --kafka-config ${missing}: ENOENT`);
    const bad = propertiesFile('client.id=a\nsasl.username=\\uZZZZ\n');
    expect(error(['--kafka-config', bad])).toBe(`${bad}:2: malformed \\u escape '\\uZZZZ'`);
  });

  it('names the file line of a setting exactly-once refuses', () => {
    const file = propertiesFile('client.id=a\nenable.idempotence=false\n');
    expect(error(['--guarantee', 'exactly-once', '--kafka-config', file])).toBe(
      `${file}:2: enable.idempotence=false cannot be used with --guarantee exactly-once, which needs enable.idempotence=true`);
    // -X over the file puts it right.
    expect(run(['--guarantee', 'exactly-once', '--kafka-config', file, '-X', 'enable.idempotence=true'])
      .config.kafkaProperties['enable.idempotence']).toBe('true');
  });

  it("takes the Schema Registry's credentials from a Confluent client file, not as librdkafka properties", () => {
    const file = propertiesFile('security.protocol=SASL_SSL\nschema.registry.url=https://sr.example\n'
      + 'basic.auth.credentials.source=USER_INFO\nbasic.auth.user.info=reader:r3g-s3cret\n');
    const { config, warnings } = run(['--kafka-config', file, '--schema-registry', 'https://sr.example']);
    expect(config.kafkaProperties).toEqual({ 'security.protocol': 'SASL_SSL' });
    expect(config.schemaRegistryBasicAuth).toBe('reader:r3g-s3cret');
    expect(config.secrets).toContain('r3g-s3cret');
    expect(warnings).toEqual([]);
    // The flag wins over the file; the other spelling of the key is read too.
    const other = propertiesFile('schema.registry.basic.auth.user.info=a:b\n');
    expect(run(['--kafka-config', other, '--schema-registry', 'https://sr.example', '--schema-registry-basic-auth', 'c:d'])
      .config.schemaRegistryBasicAuth).toBe('c:d');
    expect(run(['--kafka-config', other, '--schema-registry', 'https://sr.example']).config.schemaRegistryBasicAuth).toBe('a:b');
  });

  it('uses the registry only when --schema-registry asks for it, and says so about the file', () => {
    const file = propertiesFile('schema.registry.url=https://sr.example\nbasic.auth.user.info=reader:pw\n');
    const { config, warnings } = run(['--kafka-config', file]);
    expect([config.schemaRegistryUrl, config.schemaRegistryBasicAuth, config.inputFraming]).toEqual([undefined, undefined, 'none']);
    expect(config.kafkaProperties).toEqual({});
    expect(warnings).toEqual([`${file}:1: schema.registry.url is not used by itself: give --schema-registry `
      + '(SCHEMA_REGISTRY_URL) to check input schemas against the registry']);
  });

  it("refuses registry credentials it cannot use, naming the file's line", () => {
    const inherit = propertiesFile('sasl.username=u\nbasic.auth.credentials.source=SASL_INHERIT\n');
    expect(error(['--kafka-config', inherit, '--schema-registry', 'https://sr.example'])).toBe(
      `${inherit}:2: basic.auth.credentials.source=SASL_INHERIT is not supported: give the registry's credentials as `
      + 'basic.auth.user.info=user:password (basic.auth.credentials.source=USER_INFO)');
    const noColon = propertiesFile('basic.auth.user.info=justauser\n');
    expect(error(['--kafka-config', noColon])).toBe(`${noColon}:1: invalid basic.auth.user.info: expected user:password`);
  });

  it("counts the registry's passwords as secrets, from the flag and from the URL", () => {
    expect(run(['--schema-registry', 'https://u:url%2Fpw@sr.example', '--schema-registry-basic-auth', 'v:flag-pw'])
      .config.secrets).toEqual(expect.arrayContaining(['flag-pw', 'url/pw', 'url%2Fpw']));
  });

  it('warns once when the group or others may read the file', () => {
    const text = 'sasl.username=u\n';
    expect(run(['--kafka-config', propertiesFile(text, 0o600)]).warnings).toEqual([]);
    expect(run(['--kafka-config', propertiesFile(text, 0o400)]).warnings).toEqual([]);
    const both = propertiesFile(text, 0o644);
    expect(run(['--kafka-config', both]).warnings).toEqual([
      `${both} is readable by group and others (mode 0644) and may hold secrets: chmod 600 it`]);
    const group = propertiesFile(text, 0o640);
    expect(run(['--kafka-config', group]).warnings).toEqual([
      `${group} is readable by its group (mode 0640) and may hold secrets: chmod 600 it`]);
    const others = propertiesFile(text, 0o604);
    expect(run(['--kafka-config', others]).warnings).toEqual([
      `${others} is readable by others (mode 0604) and may hold secrets: chmod 600 it`]);
  });
});

describe('secrets', () => {
  it('counts the named secret properties and any ending in password or secret', () => {
    for (const key of ['sasl.password', 'sasl.jaas.config', 'ssl.key.password', 'ssl.keystore.password',
      'sasl.oauthbearer.client.secret', 'ssl.truststore.password', 'my.client.secret']) {
      expect(isSecretProperty(key)).toBe(true);
    }
    for (const key of ['sasl.username', 'security.protocol', 'password.file', 'secret.name']) {
      expect(isSecretProperty(key)).toBe(false);
    }
  });

  it('collects the secret values of the file and of -X, overridden ones too', () => {
    const file = propertiesFile('sasl.username=alice\nsasl.password=from-the-file\nssl.key.password=key-pass\n');
    const { config } = run(['--kafka-config', file, '-X', 'sasl.password=from-argv']);
    expect(config.kafkaProperties['sasl.password']).toBe('from-argv');
    expect([...config.secrets].sort()).toEqual(['from-argv', 'from-the-file', 'key-pass']);
  });

  it('keeps a secret out of librdkafka\'s complaint about it', () => {
    const file = propertiesFile('sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n'
      + '  username="alice" password="jaas-s3cret";\n');
    const message = error(['--kafka-config', file]);
    expect(message).toBe(`${file}:1: Java JAAS configuration is not supported: `
      + 'librdkafka takes sasl.mechanisms, sasl.username and sasl.password');
    // A value librdkafka quotes back is replaced.
    expect(redact('Invalid value "hunter2" for "x"', ['hunter2'])).toBe('Invalid value "[redacted]" for "x"');
  });

  it('redacts secrets from every log line, escaped or not, in any field', () => {
    const lines: string[] = [];
    const log = createLogger('debug', (l) => lines.push(l), ['pa"ss\\word', 'plain-secret']);
    log.debug('librdkafka consumer', { detail: 'SASL PLAIN user with plain-secret', nested: { p: 'pa"ss\\word' } });
    log.error('failed: plain-secret', { error: new Error('auth pa"ss\\word') });
    expect(lines.join('')).not.toMatch(/plain-secret|pa\\"ss\\\\word/);
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({ message: 'librdkafka consumer', detail: 'SASL PLAIN user with [redacted]', nested: { p: '[redacted]' } }),
      expect.objectContaining({ message: 'failed: [redacted]', error: { name: 'Error', message: 'auth [redacted]' } }),
    ]);
  });
});

/** Runs `xgb-stream-replay` against the test broker; stdout and stderr together. */
function runReplay(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(path.dirname(CLI), 'replay.js'), '--brokers', brokers(), ...args],
      { cwd: path.join(__dirname, '..'), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('the replay tool', () => {
  it('takes --kafka-config and KAFKA_CONFIG, naming the file and line of a bad property', async () => {
    const file = propertiesFile('client.id=replay\nbatch.num.messages=many\n');
    const expected = `xgb-stream-replay: ${file}:2: Invalid value for configuration property "batch.num.messages"\n`;
    expect(await runReplay(['--random', '1', '--kafka-config', file])).toEqual({ code: 2, out: expected });
    expect(await runReplay(['--random', '1'], { KAFKA_CONFIG: file })).toEqual({ code: 2, out: expected });
  });

  it('hands topic-level properties to the topic configuration, where librdkafka applies them', async () => {
    const topics = await createTopicSet('replay-acks');
    // acks=1 contradicts the replay producer's idempotence: librdkafka refuses it only if it sees it.
    const file = propertiesFile('acks=1\n');
    const refused = await runReplay(['--topic', topics.input, '--random', '3', '--kafka-config', file]);
    expect(refused).toEqual({ code: 1, out: `xgb-stream-replay: could not connect to ${brokers()}: `
      + '`acks` must be set to `all` when `enable.idempotence` is true\n' });
    const sent = await runReplay(['--topic', topics.input, '--random', '3', '--json', '--kafka-config', file,
      '-X', 'enable.idempotence=false']);
    expect(sent.code).toBe(0);
    expect(JSON.parse(sent.out)).toMatchObject({ sent: 3, failed: 0 });
  });
});

describe('a planted secret never shows', () => {
  const PLANTED = 'PLANTED-zq7-secret';

  it('in a processor run whose SASL login fails, its /metrics and /readyz, and --help', async () => {
    // The local broker speaks PLAINTEXT only: the SASL handshake fails and the processor cannot start.
    const file = propertiesFile(['security.protocol=SASL_PLAINTEXT', 'sasl.mechanisms=PLAIN', 'sasl.username=xgb',
      `sasl.password=${PLANTED}`, `ssl.key.password=${PLANTED}-key`].join('\n'), 0o644);
    const topics = await createTopicSet('secret');
    const port = await freePort();
    // A short connect bound: the handshake never succeeds, and the default 30 s would only be waited out.
    const p = ProcessorProcess.start([...topicFlags(topics), '--kafka-config', file, '--log-level', 'debug',
      '-X', 'debug=all', '--metrics-port', String(port), '--connect-timeout-ms', '5000']);
    let scraped = '';
    let readyz = '';
    for (let i = 0; i < 100 && scraped === ''; i++) {
      try {
        scraped = (await get(port, '/metrics')).body;
        readyz = (await get(port, '/readyz')).body;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const exit = await p.exited;
    const help = await runCli(['--help', '--kafka-config', file], { KAFKA_PROPERTIES: `sasl.password=${PLANTED}` });
    const output = p.stdout + p.stderr + scraped + readyz + help.stdout + help.stderr;

    expect(exit.code).toBe(1);
    expect(p.stderr).toMatch(/^xgb-stream: could not connect the producer: .+$/m);
    // Scraped while it was still trying to connect: not ready, and /metrics says so too.
    expect(sample(scraped, 'xgb_stream_ready')).toBe(0);
    expect(JSON.parse(readyz)).toMatchObject({ status: 'not ready' });
    const properties = p.stderr.split('\n').filter((l) => l.includes('"message":"librdkafka properties"'));
    expect(properties.map((l) => JSON.parse(l).properties)).toEqual([{
      'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanisms': 'PLAIN', 'sasl.username': 'xgb',
      'sasl.password': '[redacted]', 'ssl.key.password': '[redacted]', 'debug': 'all',
      'session.timeout.ms': '6000', 'heartbeat.interval.ms': '500',
    }]);
    expect(p.stderr.split('\n').filter((l) => l.includes('is readable by group and others'))).toHaveLength(1);
    expect(help.stdout).toContain('--kafka-config <value>');
    expect(output).not.toContain(PLANTED);
  });

  it("in a healthy run with librdkafka's debug log on, start to graceful stop", async () => {
    // Under PLAINTEXT the SASL and TLS passwords go unused: harmless to plant.
    const file = propertiesFile(`sasl.password=${PLANTED}\nssl.key.password=${PLANTED}-key\n`);
    const topics = await createTopicSet('secret-run');
    const p = ProcessorProcess.start([...topicFlags(topics), '--kafka-config', file, '--log-level', 'debug',
      '-X', 'debug=all']);
    await p.waitForLog('partitions assigned');
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    const lines = p.stderr.trim().split('\n');
    // librdkafka said a great deal; none of it, nor our own lines, shows a secret.
    expect(lines.filter((l) => l.includes('"message":"librdkafka consumer"')).length).toBeGreaterThan(20);
    expect(lines.filter((l) => l.includes('"message":"librdkafka properties"')).map((l) => JSON.parse(l).properties))
      .toEqual([expect.objectContaining({ 'sasl.password': '[redacted]', 'ssl.key.password': '[redacted]' })]);
    expect(p.stdout + p.stderr).not.toContain(PLANTED);
  });

  it('in the replay tool: its JSON summary', async () => {
    const file = propertiesFile(`sasl.password=${PLANTED}\nmessage.timeout.ms=3000\n`);
    const topics = await createTopicSet('secret-replay');
    const r = await runReplay(['--topic', topics.input, '--random', '5', '--json', '--kafka-config', file,
      '-X', `ssl.key.password=${PLANTED}`]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ sent: 5, failed: 0, topic: topics.input });
    expect(r.out).not.toContain(PLANTED);
  });
});
