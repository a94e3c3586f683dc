#!/usr/bin/env node
/**
 * The `xgb-stream-dlq` command: `inspect` the dead-letter topic, or `replay` its records to be scored
 * again once the cause is fixed (lib/dlq/).
 */
import { ConfigError, redact } from './config';
import { inspect, formatInspect } from './dlq/inspect';
import { HELP, parseDlqArgs, type DlqCommand } from './dlq/options';
import { replayDeadLetters, type DlqReplayProgress } from './dlq/replay';
import { EXIT } from './exit';
import { KafkaClientMissingError, kafkaClient } from './kafka-client';

function formatInt(n: number): string {
  return n.toLocaleString('en-US');
}

/** A progress line on stderr: rewritten in place on a terminal, one line every few seconds otherwise. */
function progressLine(): { update: (text: string) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let drawn = false;
  return {
    update: (text) => {
      if (tty) {
        process.stderr.write(`\r${text}\x1b[K`);
        drawn = true;
      } else if (Date.now() - last >= 5_000) {
        last = Date.now();
        process.stderr.write(`${text}\n`);
      }
    },
    end: () => { if (drawn) process.stderr.write('\n'); },
  };
}

function replayText(p: DlqReplayProgress, dryRun: boolean): string {
  const skipped = [
    p.filteredOut > 0 ? `${formatInt(p.filteredOut)} filtered out` : '',
    p.overMaxReplays > 0 ? `${formatInt(p.overMaxReplays)} over --max-replays` : '',
    p.truncated > 0 ? `${formatInt(p.truncated)} truncated` : '',
    p.noTarget > 0 ? `${formatInt(p.noTarget)} without a source topic` : '',
  ].filter((s) => s !== '');
  return `dlq replay: ${formatInt(p.read)}/${formatInt(p.total)} read, ${formatInt(p.replayed)} ${dryRun ? 'would be replayed' : 'replayed'}`
    + (skipped.length > 0 ? `, ${skipped.join(', ')}` : '');
}

async function main(): Promise<number> {
  let cmd: DlqCommand;
  try {
    cmd = parseDlqArgs(process.argv.slice(2), process.env);
    if (cmd.command === 'help') {
      process.stdout.write(`${HELP}\n`);
      return EXIT.ok;
    }
    kafkaClient();
    for (const warning of cmd.warnings) process.stderr.write(`xgb-stream-dlq: warning: ${warning}\n`);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof KafkaClientMissingError) {
      process.stderr.write(`xgb-stream-dlq: ${err.message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(EXIT.interrupted);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const line = progressLine();
  try {
    if (cmd.command === 'inspect') {
      const report = await inspect({
        brokers: cmd.brokers, topic: cmd.topic, show: cmd.show, kafkaProperties: cmd.kafkaProperties,
        onProgress: (read, total) => line.update(`dlq inspect: ${formatInt(read)}/${formatInt(total)} read`),
      });
      line.end();
      process.stdout.write(`${cmd.json ? JSON.stringify(report) : formatInspect(report)}\n`);
      return EXIT.ok;
    }
    const result = await replayDeadLetters({ ...cmd, signal: abort.signal, onProgress: (p) => line.update(replayText(p, cmd.dryRun)) });
    line.end();
    process.stdout.write(cmd.json ? `${JSON.stringify({ dryRun: cmd.dryRun, ...result })}\n`
      : `${replayText(result, cmd.dryRun)}\n${Object.entries(result.byReason).map(([r, n]) => `  ${String(n).padStart(10)}  ${r}`).join('\n')}\n`);
    return abort.signal.aborted ? EXIT.interrupted : EXIT.ok;
  } catch (err) {
    line.end();
    process.stderr.write(redact(`xgb-stream-dlq: ${(err as Error).message}\n`, cmd.secrets));
    return EXIT.failure;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`xgb-stream-dlq: ${(err as Error).stack ?? err}\n`);
    process.exit(EXIT.failure);
  },
);
