/**
 * The flags of `xgb-stream-dlq`, parsed once into a frozen object per subcommand. The Kafka settings
 * (`--brokers`, `-X`, `KAFKA_PROPERTIES`) are read by one function shared by both subcommands, so that a
 * further source of librdkafka properties goes in one place.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError, parseKafkaProperty, resolveKafkaProperties, type KafkaPropertySetting } from '../config';
import { DEAD_LETTER_REASONS } from '../processor/score/validate';

/** A consumer group no other run uses: for reads that commit nothing. */
export function uniqueGroupId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export interface CommonOptions {
  readonly brokers: string;
  /** The dead-letter topic. */
  readonly topic: string;
  readonly json: boolean;
  readonly kafkaProperties: Readonly<Record<string, string>>;
  /** Secret property values, never shown. */
  readonly secrets: readonly string[];
  /** What is wrong with the --kafka-config file's permissions, if anything. */
  readonly warnings: readonly string[];
}

export interface InspectCommand extends CommonOptions {
  readonly command: 'inspect';
  readonly show: number;
}

export interface ReplayCommand extends CommonOptions {
  readonly command: 'replay';
  readonly to: string | undefined;
  readonly reasons: ReadonlySet<string> | undefined;
  readonly since: number | undefined;
  readonly until: number | undefined;
  readonly max: number | undefined;
  readonly maxReplays: number;
  readonly dryRun: boolean;
  readonly groupId: string;
}

export type DlqCommand = InspectCommand | ReplayCommand | { readonly command: 'help'; readonly about?: 'inspect' | 'replay' };

export const HELP = `Usage: xgb-stream-dlq <inspect|replay> [options]

Reads the processor's dead-letter topic. Every record there carries the reason it could not be scored
(xgb.error.reason) and where it came from (xgb.source.topic/partition/offset).

  inspect   counts by reason and by source partition, and the first records with their headers
  replay    sends records back to be scored, filtered by reason and time

Options of both:
  --brokers <host:port,...>   bootstrap servers (default 127.0.0.1:9092) [KAFKA_BROKERS]
  --topic <name>              the dead-letter topic (default predict-requests.dlq) [DEAD_LETTER_TOPIC]
  --json                      print the result as JSON on stdout
  --kafka-config <file>       Java properties file of librdkafka properties; -X wins over it [KAFKA_CONFIG]
  -X, --kafka-property <key=value>
                              librdkafka property, repeatable [KAFKA_PROPERTIES: pairs separated by commas]
  -h, --help                  show this text

Options of inspect:
  --show <n>                  records shown in full, with their headers (default 5)

Options of replay:
  --to <topic>                send to this topic (default: each record to its xgb.source.topic and partition)
  --reason <r1,r2,...>        only records with one of these reasons, repeatable (default: any)
  --since <time>              only records with a timestamp at or after this (ISO 8601 or ms since the epoch)
  --until <time>              only records with a timestamp before this
  --max <n>                   send at most n records
  --max-replays <n>           leave a record that was replayed n times already (default 3)
  --dry-run                   count what would be sent; send and commit nothing
  --group-id <id>             consumer group that remembers how far replays got (default xgb-stream-dlq)

A replay reads from where its group left off to the end of the topic as it was when it started,
commits only what the broker acknowledged, and resumes there when run again. Each record goes back
with its key, value and own headers, and xgb.replay.count one higher.
Exit status: 0 done, 1 a Kafka failure, 2 bad usage.`;

function positiveInt(name: string, raw: string, min: number): number {
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) {
    throw new ConfigError(`invalid ${name} '${raw}': expected a whole number >= ${min}`);
  }
  return Number(raw);
}

function time(name: string, raw: string): number {
  const t = /^\d+$/.test(raw.trim()) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(t)) throw new ConfigError(`invalid ${name} '${raw}': expected an ISO 8601 time or milliseconds since the epoch`);
  return t;
}

/** Parses `argv` (without node and the script) and the environment into a command. Throws ConfigError. */
export function parseDlqArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): DlqCommand {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help') return { command: 'help' };
  if (command !== 'inspect' && command !== 'replay') {
    throw new ConfigError(`unknown command '${command}': expected inspect or replay (see --help)`);
  }
  // The file first, then KAFKA_PROPERTIES, then -X: later ones win, as for the processor.
  const kafkaSettings: KafkaPropertySetting[] = [];
  for (const pair of (env.KAFKA_PROPERTIES ?? '').split(',')) {
    if (pair.trim()) kafkaSettings.push(parseKafkaProperty(pair.trim(), 'KAFKA_PROPERTIES'));
  }
  let kafkaConfig = env.KAFKA_CONFIG || undefined;
  let brokers = env.KAFKA_BROKERS || '127.0.0.1:9092';
  let topic = env.DEAD_LETTER_TOPIC || 'predict-requests.dlq';
  let json = false;
  let show = 5;
  let to: string | undefined;
  let reasons: Set<string> | undefined;
  let since: number | undefined;
  let until: number | undefined;
  let max: number | undefined;
  let maxReplays = 3;
  let dryRun = false;
  let groupId = 'xgb-stream-dlq';
  const only = (name: string, which: 'inspect' | 'replay'): void => {
    if (command !== which) throw new ConfigError(`${name} is an option of ${which}, not ${command}`);
  };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      const v = eq > 0 ? arg.slice(eq + 1) : rest[++i];
      if (v === undefined) throw new ConfigError(`missing value for ${name}`);
      if (v.trim() === '') throw new ConfigError(`invalid ${name} '': expected a non-empty value`);
      return v;
    };
    switch (name) {
      case '-h': case '--help': return { command: 'help', about: command };
      case '--brokers': brokers = value(); break;
      case '--topic': topic = value(); break;
      case '--json': json = true; break;
      case '--kafka-config': kafkaConfig = value(); break;
      case '-X': case '--kafka-property': kafkaSettings.push(parseKafkaProperty(value(), name)); break;
      case '--show': only(name, 'inspect'); show = positiveInt(name, value(), 0); break;
      case '--to': only(name, 'replay'); to = value(); break;
      case '--reason': {
        only(name, 'replay');
        reasons ??= new Set();
        for (const r of value().split(',').map((s) => s.trim()).filter((s) => s !== '')) {
          if (!(DEAD_LETTER_REASONS as readonly string[]).includes(r)) {
            throw new ConfigError(`invalid --reason '${r}': expected one of ${DEAD_LETTER_REASONS.join(', ')}`);
          }
          reasons.add(r);
        }
        break;
      }
      case '--since': only(name, 'replay'); since = time(name, value()); break;
      case '--until': only(name, 'replay'); until = time(name, value()); break;
      case '--max': only(name, 'replay'); max = positiveInt(name, value(), 1); break;
      case '--max-replays': only(name, 'replay'); maxReplays = positiveInt(name, value(), 1); break;
      case '--dry-run': only(name, 'replay'); dryRun = true; break;
      case '--group-id': only(name, 'replay'); groupId = value(); break;
      default: throw new ConfigError(`unknown option '${arg}' (see --help)`);
    }
  }
  if (since !== undefined && until !== undefined && since >= until) {
    throw new ConfigError('--since must be before --until');
  }
  if (to !== undefined && to === topic) throw new ConfigError(`--to ${to} is the dead-letter topic itself`);
  const kafka = resolveKafkaProperties(kafkaConfig, kafkaSettings);
  const common = {
    brokers, topic, json, kafkaProperties: Object.freeze(kafka.properties), secrets: kafka.secrets, warnings: kafka.warnings,
  };
  return Object.freeze(command === 'inspect'
    ? { command, ...common, show }
    : { command, ...common, to, reasons, since, until, max, maxReplays, dryRun, groupId });
}
