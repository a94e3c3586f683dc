/**
 * Structured logging: one JSON object per line on stderr, `{time, level, message, ...context}`.
 * Quiet by default (warnings and errors) so that a healthy processor says nothing. Secrets (the values
 * of password properties) are redacted from every line, whatever part of it they turn up in: a
 * librdkafka log line, an error message, a context value.
 */
import { redact, type LogLevel } from './config';

const SEVERITY: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A logger bound to a least-severe level and a sink. */
export interface Logger {
  error(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  debug(message: string, context?: Record<string, unknown>): void;
}

function serialise(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/**
 * Creates a logger writing JSON lines to `write` (stderr by default), with each of `secrets` replaced
 * by [redacted].
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l),
  secrets: readonly string[] = []): Logger {
  // A secret with a quote or a backslash appears escaped inside the JSON line.
  const hidden = [...new Set(secrets.flatMap((s) => [s, JSON.stringify(s).slice(1, -1)]))];
  const at = (lvl: LogLevel) => (message: string, context: Record<string, unknown> = {}): void => {
    if (SEVERITY[lvl] > SEVERITY[level]) return;
    const entry: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, message };
    for (const [k, v] of Object.entries(context)) entry[k] = serialise(v);
    const line = JSON.stringify(entry);
    write((hidden.length > 0 ? redact(line, hidden) : line) + '\n');
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
