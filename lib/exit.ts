/**
 * How the `xgb-stream` command ends: its exit statuses, and a bound on how long exiting may take.
 */
import { loadNative } from './native';

/**
 * The exit statuses: the contract with whatever runs the command (a shell, systemd, Kubernetes),
 * documented in the README's table.
 */
export const EXIT = Object.freeze({
  /** Stopped cleanly: a signal asked it to, and everything in flight was delivered and committed. */
  ok: 0,
  /** A runtime failure: no connection, missing topics, an output that could not be delivered. */
  failure: 1,
  /** An invalid setting or model file, named in the message; or node-rdkafka not installed. */
  usage: 2,
  /** A second SIGINT or SIGTERM during a graceful stop: out at once, without finishing. */
  interrupted: 130,
});

/**
 * How long exiting may take once the processor has stopped. process.exit() joins every thread of
 * libuv's pool, and a librdkafka call that never returns there would keep the process alive for good.
 */
export const EXIT_GRACE_MS = 3_000;

/**
 * Bounds the exit that follows: if the process still runs {@link EXIT_GRACE_MS} from now, `line` (a
 * log line) is written to stderr and it ends with `status` without waiting for libuv's pool.
 */
export function armExitDeadline(status: number, line: string): void {
  if (!Number.isInteger(status) || status < 0 || status > 255) throw new RangeError(`exit status ${status} is not 0-255`);
  loadNative().armExitDeadline(status, EXIT_GRACE_MS, line);
}
