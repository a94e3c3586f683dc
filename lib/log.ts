/**
 * Structured logging: one JSON object per line on stderr, `{time, level, message, ...context}`.
 * Quiet by default (warnings and errors) so that a healthy processor says nothing.
 */
import type { LogLevel } from './config';

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

/** Creates a logger writing JSON lines to `write` (stderr by default). */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const at = (lvl: LogLevel) => (message: string, context: Record<string, unknown> = {}): void => {
    if (SEVERITY[lvl] > SEVERITY[level]) return;
    const entry: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, message };
    for (const [k, v] of Object.entries(context)) entry[k] = serialise(v);
    write(JSON.stringify(entry) + '\n');
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
