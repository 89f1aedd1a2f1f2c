import { Ajv, type ValidateFunction } from 'ajv';

/**
 * A channel kind is one Kafka topic streamed to browsers: what its records look like, who may
 * read and publish them, and how a client that falls behind is treated. Everything the gateway
 * does with a kind — decoding and validating its records, routes, auth checks, SSE ids, the
 * OpenAPI description, `/status`, metrics labels — is derived from its declaration. The built-in
 * kinds (src/channels/contract.ts) and the kinds operators declare in `CHANNELS_FILE`
 * (src/channels/channels-file.ts) use this one format (README, "Channel kinds").
 */

/**
 * A JSON Schema (draft-07, as Ajv reads it) for a record value: an object schema. Written as
 * plain JSON (a CHANNELS_FILE) or with TypeBox (the built-ins).
 */
export type JsonSchema = { type?: unknown; properties?: object } | Record<string, unknown>;

function schemaType(schema: JsonSchema): unknown {
  return (schema as { type?: unknown }).type;
}

function schemaProperties(schema: JsonSchema): Record<string, unknown> {
  return ((schema as { properties?: object }).properties ?? {}) as Record<string, unknown>;
}

export interface EventTypeDeclaration {
  /** The record value's schema: an object schema. Validated once per record, on consumption. */
  schema: JsonSchema;
  /**
   * The value's fields that reach browsers, in this order. Default: the schema's top-level
   * `properties`. Any other field of the value is dropped: what was not declared never leaks.
   */
  fields?: string[];
  /** What the event means, for `/docs`. */
  description?: string;
}

export interface ChannelKindDeclaration {
  /**
   * The kind's name: the route segment (`/streams/<name>/:channel`), the query name on
   * multi-channel streams (`/events?<name>=…`), the channel field of every event's data, the
   * metrics label. Lower case letters, digits and `_`, starting with a letter, at most 32.
   */
  name: string;
  /** The Kafka topic; record key = channel name (README, "Kafka record contract"). */
  topic: string;
  /** One line for `/docs` and `/status`. */
  description?: string;
  /** The event types of the topic, by name (the SSE `event:` field). */
  eventTypes: Record<string, EventTypeDeclaration>;
  /** The record header naming the event type. Default `event-type`. */
  eventTypeHeader?: string;
  /** The event type of a record without that header: lets a topic written by others be streamed as it is. */
  defaultEventType?: string;
  /** Event types that may be published with `POST /streams/<name>/:channel/<type>`. Default none. */
  publish?: string[];
  /**
   * What a client that falls behind gets: `cut` (default) ends its stream and it resumes from
   * its last id, missing nothing; `conflate` keeps only the latest event per channel and type
   * for it (prices: old values are worthless).
   */
  slowClients?: 'cut' | 'conflate';
  /** Most recent events per channel kept in memory for resumes (the rest come from Kafka). Default HISTORY_MAX_EVENTS. */
  historyMaxEvents?: number;
  /** Who may read: channel names or trailing-`*` patterns anyone may read, and the token claim listing a holder's channels. */
  access?: { public?: string[]; claim?: string };
  /**
   * How producers pick a record's partition. `any` (default for declared kinds): the gateway
   * learns each channel's partition from the records it consumes, and a channel it has not seen
   * yet is followed on every partition, so resume works whatever partitioner wrote the topic
   * (librdkafka's default is CRC32, Java's murmur2). `murmur2`: Kafka's Java default, which the
   * gateway's own publishes use; an unseen channel is followed on the partition murmur2 names.
   */
  partitioning?: 'murmur2' | 'any';
  /**
   * Track who holds streams on each channel (README, "Presence"): `GET` its presence, and its
   * streams receive `event: presence` (a snapshot, then joins and leaves). Default false.
   */
  presence?: boolean;
}

/**
 * Messages with an owner (the built-in rooms): the header naming a message's author, and the
 * event types that create, edit and delete a message, each naming it by its value's `id`.
 * `editIdField`: the value field holding an edit's own id, which is what a repeat of an edit is
 * judged by (src/dispatch/dedup.ts): the `id` names the message, which several edits share.
 */
export interface MessageOwnership {
  authorHeader: string;
  created: string;
  edited: string;
  editIdField: string;
  deleted: string;
}

/** Declarations of the built-ins only: features their own routes need (message ownership). */
export interface BuiltInKindDeclaration extends ChannelKindDeclaration {
  /** The header naming a message's author, and the event types creating, editing and deleting messages (src/dispatch/message-ledger.ts). */
  ownership?: MessageOwnership;
}

export interface EventType {
  name: string;
  /** Fields copied from the value into the SSE data, in order. */
  fields: readonly string[];
  schema: JsonSchema;
  description: string | undefined;
  check: ValidateFunction;
}

/** A declaration resolved: defaults filled, schemas compiled, its SSE id slot assigned. */
export interface ChannelKind {
  name: string;
  topic: string;
  description: string;
  eventTypes: ReadonlyMap<string, EventType>;
  eventTypeHeader: string;
  defaultEventType: string | undefined;
  publishable: ReadonlySet<string>;
  conflate: boolean;
  historyMaxEvents: number | undefined;
  publicPatterns: readonly string[];
  claim: string;
  partitioning: 'murmur2' | 'any';
  ownership: MessageOwnership | undefined;
  /** Presence is tracked on its channels (README, "Presence"). */
  presence: boolean;
  /**
   * The kind's number inside SSE ids (src/connection/cursor.ts): 0 and 1 for the built-ins,
   * derived from the topic name for declared kinds, so reordering the file changes no id.
   */
  slot: number;
  builtIn: boolean;
}

export const KIND_NAME_PATTERN = '^[a-z][a-z0-9_]{0,31}$';
export const EVENT_TYPE_NAME_PATTERN = '^[A-Za-z][A-Za-z0-9_.-]{0,63}$';
export const DEFAULT_EVENT_TYPE_HEADER = 'event-type';
/** The data field every event carries besides its channel and fields: the record timestamp. */
export const TIMESTAMP_FIELD = 'ts';

/** A declaration the gateway cannot use; the message names the kind and the field. */
export class ChannelKindError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChannelKindError';
  }
}

/** One Ajv for every record schema: strict about the schemas themselves, so a typo in a declaration is an error at startup. */
const ajv = new Ajv({ allErrors: false, strict: true, strictRequired: false, allowUnionTypes: true });

/**
 * The slot of a declared kind's topic: FNV-1a of the name, folded into 2..2^31-1 (0 and 1 are
 * the built-ins'). A collision between two declared topics is refused at startup.
 */
export function slotForTopic(topic: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(topic, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return 2 + (hash % (2 ** 31 - 2));
}

function fail(kind: string, field: string, problem: string): never {
  throw new ChannelKindError(`channel kind "${kind}": ${field} ${problem}`);
}

/**
 * Resolves a declaration. `slot`: given for built-ins, else derived from the topic. Throws a
 * ChannelKindError naming the kind and field for anything unusable (the file's shape is checked
 * before, in channels-file.ts; this checks what a schema cannot: schemas compile, names agree).
 */
export function compileKind(declaration: BuiltInKindDeclaration, options: { slot?: number; historyMaxEvents?: number } = {}): ChannelKind {
  const { name } = declaration;
  if (!new RegExp(KIND_NAME_PATTERN).test(name)) fail(name, 'name', `must match ${KIND_NAME_PATTERN}`);
  const eventTypes = new Map<string, EventType>();
  for (const [typeName, type] of Object.entries(declaration.eventTypes)) {
    const field = `eventTypes.${typeName}`;
    if (!new RegExp(EVENT_TYPE_NAME_PATTERN).test(typeName)) fail(name, field, `is not a valid event type name (${EVENT_TYPE_NAME_PATTERN})`);
    if (schemaType(type.schema) !== 'object') fail(name, `${field}.schema.type`, 'must be "object" (a record value is a JSON object)');
    let check: ValidateFunction;
    const properties = schemaProperties(type.schema);
    try {
      check = ajv.compile(type.schema);
    } catch (error) {
      fail(name, `${field}.schema`, `is not a valid JSON Schema: ${(error as Error).message}`);
    }
    const fields = type.fields ?? Object.keys(properties);
    for (const fieldName of fields) {
      if (!Object.hasOwn(properties, fieldName)) fail(name, `${field}.fields`, `names "${fieldName}", which the schema's properties do not declare`);
      if (fieldName === name || fieldName === TIMESTAMP_FIELD) fail(name, `${field}.fields`, `may not carry "${fieldName}": the event data has its own (the channel, the timestamp)`);
    }
    eventTypes.set(typeName, { name: typeName, fields, schema: type.schema, description: type.description, check });
  }
  if (eventTypes.size === 0) fail(name, 'eventTypes', 'must declare at least one event type');
  for (const typeName of declaration.publish ?? []) {
    if (!eventTypes.has(typeName)) fail(name, 'publish', `names "${typeName}", which is not one of its eventTypes`);
  }
  if (declaration.defaultEventType !== undefined && !eventTypes.has(declaration.defaultEventType)) {
    fail(name, 'defaultEventType', `names "${declaration.defaultEventType}", which is not one of its eventTypes`);
  }
  return {
    name,
    topic: declaration.topic,
    description: declaration.description ?? `Events of the ${declaration.topic} topic`,
    eventTypes,
    eventTypeHeader: declaration.eventTypeHeader ?? DEFAULT_EVENT_TYPE_HEADER,
    defaultEventType: declaration.defaultEventType,
    publishable: new Set(declaration.publish ?? []),
    conflate: declaration.slowClients === 'conflate',
    historyMaxEvents: declaration.historyMaxEvents ?? options.historyMaxEvents,
    publicPatterns: declaration.access?.public ?? [],
    claim: declaration.access?.claim ?? name,
    partitioning: declaration.partitioning ?? 'any',
    ownership: declaration.ownership,
    presence: declaration.presence ?? false,
    slot: options.slot ?? slotForTopic(declaration.topic),
    builtIn: options.slot !== undefined,
  };
}

/**
 * The kinds of one deployment: the built-ins, then the declared ones. Looked up by name (routes,
 * claims), by topic (each consumed record) and by slot (SSE ids). Names, topics, claims and slots
 * are unique: a clash is refused when the registry is built.
 */
export class ChannelRegistry {
  readonly kinds: readonly ChannelKind[];
  readonly #byName = new Map<string, ChannelKind>();
  readonly #byTopic = new Map<string, ChannelKind>();
  readonly #bySlot = new Map<number, ChannelKind>();

  constructor(kinds: readonly ChannelKind[]) {
    this.kinds = kinds;
    const claims = new Map<string, string>();
    for (const kind of kinds) {
      if (this.#byName.has(kind.name)) fail(kind.name, 'name', 'is already taken by another kind');
      const sameTopic = this.#byTopic.get(kind.topic);
      if (sameTopic !== undefined) fail(kind.name, 'topic', `"${kind.topic}" is already the topic of kind "${sameTopic.name}" (one topic, one kind)`);
      const sameSlot = this.#bySlot.get(kind.slot);
      if (sameSlot !== undefined) fail(kind.name, 'topic', `"${kind.topic}" hashes to the id slot of kind "${sameSlot.name}"'s topic: rename one topic`);
      const sameClaim = claims.get(kind.claim);
      if (sameClaim !== undefined) fail(kind.name, 'access.claim', `"${kind.claim}" is already the claim of kind "${sameClaim}"`);
      this.#byName.set(kind.name, kind);
      this.#byTopic.set(kind.topic, kind);
      this.#bySlot.set(kind.slot, kind);
      claims.set(kind.claim, kind.name);
    }
  }

  byName(name: string): ChannelKind | undefined {
    return this.#byName.get(name);
  }

  byTopic(topic: string): ChannelKind | undefined {
    return this.#byTopic.get(topic);
  }

  bySlot(slot: number): ChannelKind | undefined {
    return this.#bySlot.get(slot);
  }

  /** The kind named `name`; throws for a name not in the registry (a programming error). */
  get(name: string): ChannelKind {
    const kind = this.#byName.get(name);
    if (kind === undefined) throw new Error(`no channel kind "${name}"`);
    return kind;
  }

  get topics(): string[] {
    return this.kinds.map((kind) => kind.topic);
  }
}
