/**
 * The operations endpoint: `/metrics` (Prometheus text format), `/healthz` (the process is up) and
 * `/readyz` (partitions assigned, the cluster reachable).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ProcessorMetrics } from './metrics';

/** What the endpoint asks of the running processor. */
export interface ReadinessSource {
  readonly ready: boolean;
  /** Why it is not ready, when known (a broker outage, stopping). */
  readonly notReadyReason?: string;
  readonly assignedPartitions: readonly number[];
  refreshLag(): void;
}

/** Starts the endpoint on 127.0.0.1-or-all interfaces at `port` (0 picks a free port); resolves once listening. */
export async function startMetricsServer(
  port: number, metrics: ProcessorMetrics, source: ReadinessSource, host = '0.0.0.0',
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      source.refreshLag();
      metrics.render().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
    } else if (url === '/readyz') {
      const ready = source.ready;
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
