/**
 * The `xgb-stream` command's exit statuses: the contract with whatever runs it (a shell, systemd,
 * Kubernetes), documented in the README's table.
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
