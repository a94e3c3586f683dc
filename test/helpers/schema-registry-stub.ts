/**
 * A Schema Registry for the tests: the two calls of the Confluent-compatible REST API that the
 * processor and the replay tool use (`GET /schemas/ids/{id}`, `POST /subjects/{subject}/versions`),
 * over a real HTTP server, holding schemas in memory. No real registry runs on this machine without
 * its jars (see the README's Wire format section), so this is what the registry tests talk to.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubSchema {
  readonly schema: string;
  /** Left out of the answer for AVRO, as the registry does. */
  readonly schemaType?: 'PROTOBUF' | 'JSON' | 'AVRO';
}

export class SchemaRegistryStub {
  /** Every request's method, path and Authorization header, in order. */
  readonly requests: Array<{ method: string; path: string; authorization: string | undefined }> = [];
  /** Answer this many GETs with HTTP 503 before answering properly (a registry restarting). */
  failNext = 0;
  private nextId = 1;

  private constructor(private readonly server: http.Server, readonly url: string,
    readonly schemas: Map<number, StubSchema>, private readonly basicAuth: string | undefined) {}

  static async start(schemas: Record<number, StubSchema> = {}, basicAuth?: string): Promise<SchemaRegistryStub> {
    const map = new Map(Object.entries(schemas).map(([k, v]) => [Number(k), v]));
    let stub: SchemaRegistryStub | undefined;
    const server = http.createServer((req, res) => stub!.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    stub = new SchemaRegistryStub(server, `http://127.0.0.1:${port}`, map, basicAuth);
    stub.nextId = Math.max(0, ...map.keys()) + 1;
    return stub;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = req.url ?? '';
    this.requests.push({ method: req.method ?? '', path, authorization: req.headers.authorization });
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify(body));
    };
    if (this.basicAuth !== undefined
      && req.headers.authorization !== `Basic ${Buffer.from(this.basicAuth).toString('base64')}`) {
      reply(401, { error_code: 401, message: 'Unauthorized' });
      return;
    }
    const byId = /^\/schemas\/ids\/(\d+)$/.exec(path);
    if (req.method === 'GET' && byId) {
      if (this.failNext > 0) {
        this.failNext--;
        reply(503, { error_code: 50003, message: 'restarting' });
        return;
      }
      const s = this.schemas.get(Number(byId[1]));
      if (s === undefined) reply(404, { error_code: 40403, message: 'Schema not found' });
      else reply(200, s.schemaType === 'AVRO' ? { schema: s.schema } : s);
      return;
    }
    const subject = /^\/subjects\/([^/]+)\/versions$/.exec(path);
    if (req.method === 'POST' && subject) {
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => {
        const posted = JSON.parse(body) as StubSchema;
        for (const [id, s] of this.schemas) {
          if (s.schema === posted.schema && s.schemaType === posted.schemaType) return reply(200, { id });
        }
        const id = this.nextId++;
        this.schemas.set(id, { schema: posted.schema, schemaType: posted.schemaType });
        reply(200, { id });
      });
      return;
    }
    reply(404, { error_code: 404, message: 'HTTP 404 Not Found' });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
