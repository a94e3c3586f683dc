/**
 * The Schema Registry, through its Confluent-compatible REST API. For framed input, each schema id a
 * record names is fetched once (`GET /schemas/ids/{id}`), parsed with protobufjs, and must describe,
 * at the record's message indexes, a message that reads as a PredictRequest: field 1 a string and
 * field 4 a repeated float, by number and type. A record whose schema is anything else would decode
 * into wrong fields; it becomes a dead letter `incompatible-schema` instead. For framed output, the
 * wire format's schema is registered under an output topic's subject (`POST /subjects/{s}/versions`).
 */
import { Namespace, parse, Type } from 'protobufjs';

/** How to reach the registry. */
export interface SchemaRegistryOptions {
  /** Base URL, e.g. `http://registry:8081` or Apicurio's `http://registry:8080/apis/ccompat/v7`; may hold `user:password@`. */
  readonly url: string;
  /** `user:password` for HTTP basic auth; wins over credentials in the URL. */
  readonly basicAuth?: string;
  /** Bound on one HTTP request. */
  readonly requestTimeoutMs?: number;
  /** Called before a failed look-up (by schema id) or registration (by subject) is tried again: the registry unreachable, or an HTTP 5xx. */
  readonly onRetry?: (what: number | string, attempt: number, error: Error) => void;
  /** Pauses between attempts, growing to this bound. */
  readonly maxBackoffMs?: number;
}

/** What the registry holds under one id, as far as the check needs it. */
type Lookup =
  | { readonly kind: 'protobuf'; readonly parsed: ReturnType<typeof parse> }
  | { readonly kind: 'refused'; readonly message: string };

/** A lookup that may succeed when tried again. */
class TransientError extends Error {}

/** The registry's answers, cached by schema id, and the verdicts, cached by id and message indexes. */
export class SchemaRegistry {
  private readonly base: string;
  private readonly authorization: string | undefined;
  private readonly lookups = new Map<number, Lookup>();
  private readonly verdicts = new Map<string, string | null>();
  private readonly pending = new Map<number, Promise<void>>();

  constructor(private readonly options: SchemaRegistryOptions) {
    const url = new URL(options.url);
    const userInfo = options.basicAuth
      ?? (url.username !== '' ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined);
    // fetch refuses a URL with credentials in it: they travel in the Authorization header instead.
    url.username = '';
    url.password = '';
    this.base = url.toString().replace(/\/+$/, '');
    this.authorization = userInfo === undefined ? undefined : `Basic ${Buffer.from(userInfo, 'utf8').toString('base64')}`;
  }

  /**
   * Looks up the ids not yet known, each once however many records name it. A registry that cannot be
   * reached is tried again, with a growing pause, until it answers: records wait rather than being
   * dead-lettered for an outage, as they wait for a broker.
   */
  async learn(schemaIds: Iterable<number>): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const id of new Set(schemaIds)) {
      if (this.lookups.has(id)) continue;
      let p = this.pending.get(id);
      if (p === undefined) {
        p = this.fetchWithRetry(id).then((lookup) => { this.lookups.set(id, lookup); })
          .finally(() => this.pending.delete(id));
        this.pending.set(id, p);
      }
      waits.push(p);
    }
    await Promise.all(waits);
  }

  /**
   * Why records of schema `schemaId` at `messageIndexes` cannot be read as PredictRequests, or
   * undefined when they can. The id must have been learnt.
   */
  incompatibility(schemaId: number, messageIndexes: readonly number[]): string | undefined {
    const key = `${schemaId}:${messageIndexes.join(',')}`;
    let verdict = this.verdicts.get(key);
    if (verdict === undefined) {
      const lookup = this.lookups.get(schemaId);
      if (lookup === undefined) throw new Error(`schema id ${schemaId} was not looked up`);
      verdict = lookup.kind === 'refused'
        ? `schema id ${schemaId}: ${lookup.message}`
        : checkMessage(schemaId, lookup.parsed, messageIndexes) ?? null;
      this.verdicts.set(key, verdict);
    }
    return verdict ?? undefined;
  }

  /**
   * Registers a protobuf schema under `subject` (the registry answers with the existing id when the
   * subject already has it) and returns its id. Tried again, like a look-up, while the registry
   * cannot be reached; a refusal (incompatible with the subject's earlier versions, no rights) throws.
   */
  async register(subject: string, schema: string): Promise<number> {
    const path = `/subjects/${encodeURIComponent(subject)}/versions`;
    return this.withRetry(subject, async () => {
      const { status, body } = await this.request('POST', path, JSON.stringify({ schemaType: 'PROTOBUF', schema }));
      if (status !== 200) {
        const refused = `the registry refused the schema of subject ${subject}: HTTP ${status} ${body.slice(0, 300)}`;
        if (status >= 500 || status === 408 || status === 429) throw new TransientError(refused);
        throw new Error(refused);
      }
      const id = (JSON.parse(body) as { id?: unknown }).id;
      if (typeof id !== 'number') throw new TransientError(`POST ${path}: no id in the answer: ${body.slice(0, 200)}`);
      return id;
    });
  }

  private async withRetry<T>(what: number | string, attemptOnce: () => Promise<T>): Promise<T> {
    const maxBackoff = this.options.maxBackoffMs ?? 10_000;
    for (let attempt = 1; ; attempt++) {
      try {
        return await attemptOnce();
      } catch (err) {
        if (!(err instanceof TransientError)) throw err;
        this.options.onRetry?.(what, attempt, err);
        await new Promise((resolve) => setTimeout(resolve, Math.min(maxBackoff, 250 * 2 ** Math.min(attempt - 1, 10))));
      }
    }
  }

  private fetchWithRetry(id: number): Promise<Lookup> {
    return this.withRetry(id, () => this.fetchOnce(id));
  }

  /** One HTTP exchange; a network failure or timeout is a TransientError. */
  private async request(method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; body: string }> {
    const url = `${this.base}${path}`;
    try {
      const response = await fetch(url, {
        method, body,
        headers: {
          Accept: 'application/vnd.schemaregistry.v1+json, application/json',
          ...(body !== undefined ? { 'Content-Type': 'application/vnd.schemaregistry.v1+json' } : {}),
          ...(this.authorization ? { Authorization: this.authorization } : {}),
        },
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 10_000),
      });
      return { status: response.status, body: await response.text() };
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw new TransientError(`${method} ${url}: ${cause?.message ?? (err as Error).message}`);
    }
  }

  private async fetchOnce(id: number): Promise<Lookup> {
    const url = `${this.base}/schemas/ids/${id}`;
    const { status, body } = await this.request('GET', `/schemas/ids/${id}`);
    // A 404 is the registry's answer for an id it never issued: final. Anything else but 200 may pass.
    if (status === 404) return { kind: 'refused', message: 'not found in the registry' };
    if (status !== 200) throw new TransientError(`GET ${url}: HTTP ${status} ${body.slice(0, 200)}`);
    let schema: { schema?: unknown; schemaType?: unknown };
    try {
      schema = JSON.parse(body);
    } catch {
      throw new TransientError(`GET ${url}: the answer is not JSON: ${body.slice(0, 200)}`);
    }
    // The registry leaves schemaType out for Avro, its first and default type.
    const type = typeof schema.schemaType === 'string' ? schema.schemaType : 'AVRO';
    if (type !== 'PROTOBUF') return { kind: 'refused', message: `the schema is ${type}, not PROTOBUF` };
    if (typeof schema.schema !== 'string') return { kind: 'refused', message: 'the registry gave no schema text' };
    try {
      return { kind: 'protobuf', parsed: parse(schema.schema, { keepCase: true }) };
    } catch (err) {
      return { kind: 'refused', message: `the schema does not parse: ${(err as Error).message}` };
    }
  }
}

/** The message types directly inside `ns`, in the order the schema declares them. */
function messagesOf(ns: Namespace): Type[] {
  return ns.nestedArray.filter((n): n is Type => n instanceof Type);
}

/** Why the message at `indexes` of a parsed schema is not a PredictRequest, or undefined. */
function checkMessage(schemaId: number, parsed: ReturnType<typeof parse>, indexes: readonly number[]): string | undefined {
  const top = parsed.package ? parsed.root.lookup(parsed.package) : parsed.root;
  if (!(top instanceof Namespace)) return `schema id ${schemaId} declares no message`;
  let candidates = messagesOf(top);
  let message: Type | undefined;
  for (const index of indexes) {
    message = candidates[index];
    if (message === undefined) {
      return `schema id ${schemaId} has no message at indexes [${indexes.join(', ')}]`;
    }
    candidates = messagesOf(message);
  }
  const name = `schema id ${schemaId} message ${message!.fullName.replace(/^\./, '')}`;
  const recordId = message!.fieldsById[1];
  const features = message!.fieldsById[4];
  if (recordId === undefined || recordId.type !== 'string' || recordId.repeated || recordId.map) {
    return `${name}: field 1 is ${describeField(recordId)}, a PredictRequest needs string recordID`;
  }
  if (features === undefined || features.type !== 'float' || !features.repeated || features.map) {
    return `${name}: field 4 is ${describeField(features)}, a PredictRequest needs repeated float featuresVector`;
  }
  return undefined;
}

function describeField(field: Type['fieldsById'][number] | undefined): string {
  if (field === undefined) return 'absent';
  return `${field.repeated ? 'repeated ' : ''}${field.map ? 'map ' : ''}${field.type} ${field.name}`;
}
