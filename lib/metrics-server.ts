/**
 * The operations endpoint: `/metrics` (Prometheus text format), `/healthz` (the process is up) and
 * `/readyz` (partitions assigned, the cluster reachable).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ProcessorMetrics } from './metrics';
import type { ReloadOutcome } from './processor/model/reload';

/** What the endpoint asks of the running processor. */
export interface ReadinessSource {
  readonly ready: boolean;
  /** Why it is not ready, when known (a broker outage, stopping). */
  readonly notReadyReason?: string;
  readonly assignedPartitions: readonly number[];
  refreshLag(): void;
}

/** The lifecycle API: present only with --enable-lifecycle. */
export interface Lifecycle {
  /** POST /-/reload: reloads the model through the gate. */
  readonly reload?: () => Promise<ReloadOutcome>;
}

/** What POST /-/reload answers without --enable-lifecycle. */
const LIFECYCLE_DISABLED = 'the lifecycle API is not enabled: start xgb-stream with --enable-lifecycle\n';

/**
 * Starts the endpoint on all interfaces (or `host`) at `port` (0 picks a free port); resolves once
 * listening.
 */
export async function startMetricsServer(
  port: number, metrics: ProcessorMetrics, source: ReadinessSource, lifecycle: Lifecycle = {}, host = '0.0.0.0',
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/-/reload') {
      reloadEndpoint(req.method, lifecycle, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      source.refreshLag();
      // Scraped with the rest, so that an alert sees what /readyz would answer at that moment.
      metrics.ready.set({}, source.ready ? 1 : 0);
      metrics.render().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
    } else if (url === '/readyz') {
      const ready = source.ready;
      metrics.ready.set({}, ready ? 1 : 0);
      const reason = ready ? undefined : source.notReadyReason;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({
        status: ready ? 'ready' : 'not ready', ...(reason !== undefined ? { reason } : {}),
        assignedPartitions: source.assignedPartitions,
      }) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/** POST (or PUT) /-/reload: 200 with the new version, 409 naming the failed gate, 403 when not enabled. */
function reloadEndpoint(method: string | undefined, lifecycle: Lifecycle, res: http.ServerResponse): void {
  if (!lifecycle.reload) {
    res.writeHead(403, { 'content-type': 'text/plain' }).end(LIFECYCLE_DISABLED);
    return;
  }
  if (method !== 'POST' && method !== 'PUT') {
    res.writeHead(405, { allow: 'POST, PUT' }).end();
    return;
  }
  lifecycle.reload().then(
    (outcome) => res.writeHead(outcome.result === 'success' ? 200 : 409, { 'content-type': 'application/json' })
      .end(JSON.stringify(outcome) + '\n'),
    (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`reload failed: ${err.message}\n`),
  );
}
