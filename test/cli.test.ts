/** The `xgb-stream` binary's start-up: help, bad flags, bad model files and missing topics. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { loadTestVectors, row } from './helpers/fixtures';
import {
  Collector, ProcessorProcess, brokers, createTopicSet, outputTopics, partitionCount, produceAll, readToEnd, runCli,
  topicFlags, uniqueName,
} from './helpers/kafka';
import { MODEL_DIR } from './helpers/fixtures';

/** The default model as JSON text with its threshold attribute replaced (edited as text: xgboost's
 * parser tells 1.0 from 1, which a JSON round trip would lose). */
function modelWithThreshold(value: string): string {
  const text = readFileSync(path.join(MODEL_DIR, 'model.json'), 'utf8');
  expect(text).toContain('"threshold":"0.5"');
  return text.replace('"threshold":"0.5"', `"threshold":${JSON.stringify(value)}`);
}

describe('xgb-stream command line', () => {
  it('prints its help with every option', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: xgb-stream [options]');
    expect(r.stdout).toContain('--suspicious-topic <value>');
    expect(r.stdout).toContain('[SUSPICIOUS_TOPIC]');
  });

  it('exits 2 naming an invalid flag', async () => {
    const r = await runCli(['--batch-size', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("xgb-stream: invalid --batch-size 'many': expected an integer from 1 to 100000\n");
  });

  it('exits 2 naming an invalid environment variable', async () => {
    const r = await runCli([], { OUTPUT_FORMAT: 'xml' });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("xgb-stream: invalid OUTPUT_FORMAT 'xml': expected one of protobuf, json, float\n");
  });

  it('exits 2 for -X enable.auto.commit or isolation.level that contradict --guarantee exactly-once', async () => {
    const autoCommit = await runCli(['--guarantee', 'exactly-once', '-X', 'enable.auto.commit=true']);
    expect(autoCommit).toEqual({ code: 2, stdout: '', stderr: 'xgb-stream: -X enable.auto.commit=true cannot be used '
      + 'with --guarantee exactly-once, which needs enable.auto.commit=false\n' });
    const isolation = await runCli(['--guarantee', 'exactly-once'], { KAFKA_PROPERTIES: 'isolation.level=read_uncommitted' });
    expect(isolation).toEqual({ code: 2, stdout: '', stderr: 'xgb-stream: -X isolation.level=read_uncommitted cannot be '
      + 'used with --guarantee exactly-once, which needs isolation.level=read_committed\n' });
  });

  it('exits 2 naming a missing model file', async () => {
    const missing = path.join(os.tmpdir(), 'no-such-dir', 'model.ubj');
    const r = await runCli(['--model', missing, '--brokers', brokers()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xgb-stream: invalid --model: Cannot load XGBoost model from ${missing}: ` +
      `XGBoosterLoadModel failed: Opening ${missing} failed: No such file or directory\n`);
  });

  it('exits 2 naming a shadow model that does not load', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-cli-')), 'shadow.ubj');
    writeFileSync(file, 'not a model');
    const r = await runCli(['--shadow-model', file, '--brokers', brokers()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xgb-stream: invalid --shadow-model: Cannot load XGBoost model from ${file}: `
      + 'it is not an XGBoost model: neither JSON, UBJSON nor the legacy binary format\n');
  });

  it('exits 2 for a model that would score wrongly: a newer release, legacy binary, a regression objective', async () => {
    const matrix = path.join(__dirname, '..', 'models', 'matrix');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-cli-'));
    const future = path.join(dir, 'future.json');
    // Edited as text: a JSON round trip would turn xgboost's 1.0 into 1, which its parser rejects.
    writeFileSync(future, readFileSync(path.join(matrix, '3.4.1', 'model.json'), 'utf8')
      .replace(/,"version":\[3,4,1\]\}$/, ',"version":[3,4,2]}'));
    const legacy = path.join(matrix, '1.7.6', 'model.bin');
    const regression = path.join(matrix, '3.4.1', 'objectives', 'reg-squarederror.json');
    const expected: [string, string][] = [
      [future, `it was saved by xgboost 3.4.2, newer than the libxgboost 3.4.1 that would score it, which may read ` +
        'it wrongly. Save it with xgboost 3.4.1 or older, or build xgb-stream against a libxgboost ≥ 3.4.2 (XGBOOST_ROOT)'],
      [legacy, "it is in xgboost's legacy binary format, which libxgboost 3.4.1 cannot read (3.1 dropped it). " +
        "Convert it once to UBJSON: 'npm run convert-model -- MODEL.bin MODEL.ubj'"],
      [regression, 'its objective is reg:squarederror, which does not give a probability of the positive class; ' +
        'the Classifier scores binary:logistic and reg:logistic models only'],
    ];
    for (const [file, reason] of expected) {
      const r = await runCli(['--model', file, '--brokers', brokers()]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`xgb-stream: invalid --model: Cannot load XGBoost model from ${file}: ${reason}\n`);
    }
  });

  it('exits 2 naming a corrupt model file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-cli-'));
    const corrupt = path.join(dir, 'model.json');
    writeFileSync(corrupt, '{"learner": ');
    const r = await runCli(['--model', corrupt, '--brokers', brokers()]);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(`xgb-stream: invalid --model: `)).toBe(true);
    expect(r.stderr).toContain(corrupt);
  });

  it('stops with an error naming missing topics', async () => {
    const topics = await createTopicSet('partly');
    const absent = { ...topics, input: uniqueName('absent-in'), deadLetter: uniqueName('absent-dlq') };
    const r = await runCli(['--brokers', brokers(), ...topicFlags(absent)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xgb-stream: topics '${absent.input}', '${absent.deadLetter}' `
      + `not found on ${brokers()}; create them or pass --create-topics\n`);
  });

  it('creates missing topics with --create-topics and stops cleanly on SIGTERM', async () => {
    const topics = await createTopicSet('create');
    const fresh = { ...topics, suspicious: uniqueName('created-suspicious') };
    const p = ProcessorProcess.start([...topicFlags(fresh), '--create-topics', '--log-level', 'info']);
    await p.waitForLog('partitions assigned');
    expect(p.stderr).toContain(`"message":"topic created","topic":"${fresh.suspicious}"`);
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('says nothing on stderr while healthy at the default log level, and JSON lines at info', async () => {
    const topics = await createTopicSet('quiet');
    const value = encodePredictRequest({ recordID: 'q-1', featuresVector: row(loadTestVectors(), 0) });
    await produceAll(topics.input, [{ key: 'q-1', value }]);
    const out = await Collector.start([topics.suspicious, topics.regular]);
    try {
      for (const level of [[], ['--log-level', 'info']]) {
        const p = ProcessorProcess.start([...topicFlags(topics), ...level, '--group-id', uniqueName('quiet')]);
        await out.waitFor(level.length === 0 ? 1 : 2, 60_000);
        expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        if (level.length === 0) {
          expect(p.stderr).toBe('');
        } else {
          const lines = p.stderr.trimEnd().split('\n').map((l) => JSON.parse(l));
          expect(lines.map((l) => l.message)).toEqual(expect.arrayContaining(['processor started', 'partitions assigned', 'stopped']));
          for (const l of lines) expect(Object.keys(l).slice(0, 3)).toEqual(['time', 'level', 'message']);
        }
      }
    } finally {
      await out.stop();
    }
  });
  it('creates the missing topics with the --create-partitions count', async () => {
    const topics = await createTopicSet('partitions');
    const fresh = { ...topics, input: uniqueName('created-in') };
    const p = ProcessorProcess.start([...topicFlags(fresh), '--create-topics', '--create-partitions', '3',
      '--log-level', 'info']);
    await p.waitForLog('partitions assigned');
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(await partitionCount(fresh.input)).toBe(3);
    expect(await partitionCount(fresh.suspicious)).toBe(1);
  });

  it('exits 130 at a second signal, without finishing the graceful stop the first one began', async () => {
    const topics = await createTopicSet('twice');
    const p = ProcessorProcess.start([...topicFlags(topics), '--log-level', 'info']);
    await p.waitForLog('partitions assigned');
    // Two different signals: two of the same kind may merge into one while the first is pending.
    p.child.kill('SIGTERM');
    p.child.kill('SIGINT');
    expect(await p.exited).toEqual({ code: 130, signal: null });
    const messages = p.stderr.trimEnd().split('\n').map((l) => JSON.parse(l).message);
    expect(messages).toContain('second signal: exiting without finishing');
    expect(messages).not.toContain('stopped');
  });

  it('exits 1 naming the brokers it cannot reach', async () => {
    const r = await runCli(['--brokers', '127.0.0.1:1', '--input-topic', 'x', '--connect-timeout-ms', '1000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xgb-stream: could not connect the producer: .+\n$/);
  });

  it('passes -X to librdkafka: an unknown property exits 2 with its message, debug=cgrp logs the group', async () => {
    const unknown = await runCli(['--brokers', brokers(), '-X', 'no.such.property=1']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('xgb-stream: -X: No such configuration property: "no.such.property"\n');
    const invalid = await runCli(['--brokers', brokers(), '-X', 'message.timeout.ms=soon']);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toBe('xgb-stream: -X: Invalid value for configuration property "message.timeout.ms"\n');

    const topics = await createTopicSet('debug');
    const p = ProcessorProcess.start([...topicFlags(topics), '--log-level', 'debug', '-X', 'debug=cgrp']);
    await p.waitForLog('partitions assigned');
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    const librdkafka = p.stderr.split('\n').filter((l) => l.includes('"message":"librdkafka consumer"'))
      .map((l) => JSON.parse(l).facility as string);
    // The consumer group's own state machine, which librdkafka logs only with debug=cgrp.
    expect(librdkafka).toEqual(expect.arrayContaining(['CGRPSTATE', 'JOIN']));
  });

  describe('the threshold', () => {
    const vectors = loadTestVectors();
    const n = 400;

    /** Scores `n` test-vector rows with the given flags; returns each output's score and topic. */
    async function route(args: string[]): Promise<Array<{ score: number; suspicious: boolean }>> {
      const topics = await createTopicSet('threshold');
      await produceAll(topics.input, Array.from({ length: n }, (_, i) => ({
        key: `t-${i}`, value: encodePredictRequest({ recordID: `t-${i}`, featuresVector: row(vectors, i) }),
      })));
      const progress = await Collector.start(outputTopics(topics));
      try {
        const p = ProcessorProcess.start([...topicFlags(topics), ...args]);
        await progress.waitFor(n);
        expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      } finally {
        await progress.stop();
      }
      return (await readToEnd(outputTopics(topics))).map((m) => {
        const record = decodeScoredRecord(m.value!);
        expect(m.topic).toBe(record.suspicious ? topics.suspicious : topics.regular);
        return { score: record.score, suspicious: record.suspicious };
      });
    }

    function expectRoutedAt(outputs: Array<{ score: number; suspicious: boolean }>, threshold: number): void {
      expect(outputs).toHaveLength(n);
      for (const o of outputs) expect(o.suspicious).toBe(o.score >= threshold);
      // Some records fall between the threshold and 0.5, so routing at 0.5 would differ.
      expect(outputs.some((o) => o.score >= threshold && o.score < 0.5)).toBe(true);
    }

    it('comes from --threshold', async () => {
      expectRoutedAt(await route(['--threshold', '0.05']), 0.05);
    });

    it('comes from the model\'s threshold attribute when no flag is given', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-threshold-'));
      const model = path.join(dir, 'model.json');
      writeFileSync(model, modelWithThreshold('0.05'));
      expectRoutedAt(await route(['--model', model]), 0.05);
    });

    it('exits 2 when the model\'s threshold attribute is not a probability', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-threshold-'));
      const model = path.join(dir, 'model.json');
      writeFileSync(model, modelWithThreshold('high'));
      const r = await runCli(['--model', model, '--brokers', brokers()]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe("xgb-stream: the model's threshold attribute 'high' is not a number from 0 to 1; pass --threshold\n");
    });
  });
});
