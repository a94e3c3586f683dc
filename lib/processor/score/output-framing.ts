/**
 * `--output-framing confluent`: scored outputs framed as a Schema Registry serializer frames them, so
 * that consumers reading through the registry's deserializers can read them. The wire format
 * (proto/predict.proto) is registered under each output topic's subject, `<topic>-value` (the
 * serializers' default TopicNameStrategy), once per process, before the first output is framed.
 */
import { readFileSync } from 'node:fs';
import { Namespace, parse, Type } from 'protobufjs';
import { PROTO_PATH } from '../../codec';
import { frameValue } from '../../input/framing';
import type { SchemaRegistry } from '../../input/schema-registry';

/** The subject of a topic's values under TopicNameStrategy. */
export function valueSubject(topic: string): string {
  return `${topic}-value`;
}

/** Frames the scored outputs of the given topics; see the module comment. */
export class OutputFraming {
  private readonly schema = readFileSync(PROTO_PATH, 'utf8');
  /** ScoredRecord's position among the schema's messages: its message indexes. */
  private readonly indexes: readonly number[];
  private readonly ids = new Map<string, number>();
  private registering: Promise<void> | undefined;

  constructor(private readonly registry: SchemaRegistry, private readonly topics: readonly string[]) {
    const parsed = parse(this.schema, { keepCase: true });
    const messages = (parsed.root.lookup(parsed.package!) as Namespace).nestedArray.filter((n) => n instanceof Type);
    this.indexes = [messages.findIndex((m) => m.name === 'ScoredRecord')];
  }

  /** Registers the schema under every topic's subject, once; later calls return at once. */
  prepare(): Promise<void> {
    if (this.ids.size === this.topics.length) return Promise.resolve();
    this.registering ??= (async () => {
      for (const topic of this.topics) this.ids.set(topic, await this.registry.register(valueSubject(topic), this.schema));
    })().finally(() => { this.registering = undefined; });
    return this.registering;
  }

  /** `value` framed with `topic`'s schema id; {@link prepare} must have resolved. */
  frame(topic: string, value: Buffer): Buffer {
    const id = this.ids.get(topic);
    if (id === undefined) throw new Error(`no schema id registered for topic ${topic}`);
    return frameValue(id, value, this.indexes);
  }
}
