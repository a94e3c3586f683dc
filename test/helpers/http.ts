/** The processor's HTTP endpoint from a test: a free port to give it, requests, and metric samples. */
import * as net from 'node:net';

/** A TCP port free at the time of asking. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** One request to the endpoint on 127.0.0.1. */
export async function request(port: number, path: string, method = 'GET'):
  Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** GET on the endpoint. */
export function get(port: number, path: string): Promise<{ status: number; type: string | null; body: string }> {
  return request(port, path);
}

/** The value of one sample line, e.g. `xgb_stream_records_out_total{topic="x"}`. */
export function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
