import { randomUUID } from 'node:crypto';
import { Type, type Static, type TObject, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import type { BusRecord, OutgoingRecord } from '../bus/types.ts';

/**
 * The record contract shared with upstream services (written down in README, "Kafka record
 * contract"): topic by kind, key = room or symbol, JSON value, the event type in a header.
 * The gateway validates every record it consumes against it, once.
 */

export const CHANNEL_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const CHANNEL_NAME = new RegExp(CHANNEL_NAME_PATTERN);
export const EVENT_TYPE_HEADER = 'event-type';
/**
 * The header naming who wrote a chat message: the token `sub` of the user it belongs to (README,
 * "Kafka record contract"). The gateway sets it from the verified identity, never from the
 * request; services producing straight to Kafka set it for a user they post for. Without it, a
 * message belongs to nobody: only moderators and services may delete it.
 */
export const AUTHOR_HEADER = 'author';
/** Longest author the contract admits: the longest `sub` a token may carry (src/auth/claims.ts). */
export const MAX_AUTHOR_LENGTH = 256;

export const ChannelName = Type.String({ pattern: CHANNEL_NAME_PATTERN, minLength: 1, maxLength: 64 });
export const MESSAGE_ID_PATTERN = '^[A-Za-z0-9_.:-]{1,64}$';
const MESSAGE_ID = new RegExp(MESSAGE_ID_PATTERN);
/** A message id: chosen by the publisher (a UUID is a good choice) or by the gateway. */
export const MessageId = Type.String({ pattern: MESSAGE_ID_PATTERN, minLength: 1, maxLength: 64 });
export const ChatUser = Type.String({ minLength: 1, maxLength: 64 });
export const ChatText = Type.String({ minLength: 1, maxLength: 2000 });
export const Price = Type.Number({ exclusiveMinimum: 0, maximum: 1e15 });
export const Currency = Type.String({ pattern: '^[A-Za-z]{3,8}$', minLength: 3, maxLength: 8 });

export const ChatMessageValue = Type.Object(
  { id: MessageId, user: ChatUser, text: ChatText },
  { additionalProperties: true },
);
export const ChatDeleteValue = Type.Object({ id: MessageId }, { additionalProperties: true });
export const PriceUpdateValue = Type.Object({ price: Price, currency: Currency }, { additionalProperties: true });

export type ChannelKind = 'room' | 'ticker';

interface EventTypeSpec {
  kind: ChannelKind;
  /** The fields copied from the record value into the SSE data, in this order. */
  fields: readonly string[];
  /** The record value's schema (its `fields` reach the SSE data; the API description derives the data schema from it). */
  schema: TObject;
  check: (value: unknown) => boolean;
}

function checker(schema: TSchema): (value: unknown) => boolean {
  const compiled = Compile(schema);
  return (value) => compiled.Check(value);
}

export const EVENT_TYPES = {
  message: { kind: 'room', fields: ['id', 'user', 'text'], schema: ChatMessageValue, check: checker(ChatMessageValue) },
  delete: { kind: 'room', fields: ['id'], schema: ChatDeleteValue, check: checker(ChatDeleteValue) },
  price_update: { kind: 'ticker', fields: ['price', 'currency'], schema: PriceUpdateValue, check: checker(PriceUpdateValue) },
} as const satisfies Record<string, EventTypeSpec>;

export type EventType = keyof typeof EVENT_TYPES;

export interface Topics {
  chat: string;
  ticker: string;
}

/** Channels are what clients subscribe to: one room, or one ticker symbol. */
export function channelKey(kind: ChannelKind, name: string): string {
  return `${kind}:${name}`;
}

export interface DecodedEvent {
  channel: string;
  kind: ChannelKind;
  name: string;
  type: EventType;
  /** The SSE `data` line: the validated fields, the channel, and the Kafka timestamp. */
  data: string;
  /**
   * The publisher's message id (`id` of the value): a repeat of it in the channel shortly after
   * is dropped (src/dispatch/dedup.ts). Always there for `message` and `delete`; for `price_update` only
   * when the producer set one (a string matching the message id pattern; any other is ignored).
   */
  messageId: string | undefined;
  /**
   * Who wrote a `message`: its `author` header (1 to MAX_AUTHOR_LENGTH characters), else null
   * (no header, or one breaking the contract: the message then belongs to nobody). Always null
   * for other event types.
   */
  author: string | null;
  timestamp: number;
}

export type DecodeResult = { ok: true; event: DecodedEvent } | { ok: false; reason: string };

function headerText(value: Buffer | string | undefined): string | undefined {
  return value === undefined ? undefined : value.toString();
}

/**
 * The SSE data of a valid record: the channel, the contract's fields, the record timestamp.
 * Always serialised again from the parsed, validated value, never copied from the record's
 * text: the text can differ from what was validated (a repeated key whose first copy the
 * parser dropped, `__proto__`, raw line breaks between tokens, number spellings), and only
 * what was validated may reach browsers. Extra producer fields never leak.
 */
function eventData(kind: ChannelKind, name: string, spec: EventTypeSpec, value: Record<string, unknown>, timestamp: number): string {
  // The contract's own keys, read as own properties: a parsed `"__proto__"` key is an own
  // property too, and no contract field is named like an Object.prototype member.
  let data = `{"${kind}":${JSON.stringify(name)}`;
  for (const field of spec.fields) data += `,"${field}":${JSON.stringify(value[field])}`;
  return `${data},"ts":${timestamp}}`;
}

export function decodeRecord(record: BusRecord, topics: Topics): DecodeResult {
  const kind: ChannelKind | undefined =
    record.topic === topics.chat ? 'room' : record.topic === topics.ticker ? 'ticker' : undefined;
  if (kind === undefined) return { ok: false, reason: `unexpected topic ${record.topic}` };
  const name = record.key?.toString('utf8');
  if (name === undefined || !CHANNEL_NAME.test(name)) return { ok: false, reason: 'key is not a valid room or symbol' };
  const typeName = headerText(record.headers[EVENT_TYPE_HEADER]);
  if (typeName === undefined) return { ok: false, reason: `missing ${EVENT_TYPE_HEADER} header` };
  if (!Object.hasOwn(EVENT_TYPES, typeName)) return { ok: false, reason: `unknown event type` };
  const type = typeName as EventType;
  const spec: EventTypeSpec = EVENT_TYPES[type];
  if (spec.kind !== kind) return { ok: false, reason: `event type ${type} does not belong on ${record.topic}` };
  if (record.value === null) return { ok: false, reason: 'empty value' };
  let value: unknown;
  const text = record.value.toString('utf8');
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  if (!spec.check(value)) return { ok: false, reason: `value does not match the ${type} schema` };
  const fields = value as Record<string, unknown>;
  const messageId = typeof fields.id === 'string' && MESSAGE_ID.test(fields.id) ? fields.id : undefined;
  return {
    ok: true,
    event: {
      channel: channelKey(kind, name),
      kind,
      name,
      type,
      data: eventData(kind, name, spec, fields, record.timestamp),
      timestamp: record.timestamp,
      messageId,
      author: type === 'message' ? authorOf(record) : null,
    },
  };
}

/** A record's `author` header when it keeps to the contract (1 to MAX_AUTHOR_LENGTH characters), else null. */
function authorOf(record: BusRecord): string | null {
  const author = headerText(record.headers[AUTHOR_HEADER]);
  return author !== undefined && author.length > 0 && author.length <= MAX_AUTHOR_LENGTH ? author : null;
}

function outgoing(topic: string, key: string, type: EventType, value: Record<string, unknown>): OutgoingRecord {
  return { topic, key, value: JSON.stringify(value), headers: { [EVENT_TYPE_HEADER]: type } };
}

/**
 * A `message` record; its id is `message.id` when the publisher chose one (retries reuse it),
 * else a new UUID. `author`: the verified token `sub` of the poster, written as the `author`
 * header (null: none, for a service or with auth off).
 */
export function chatMessageRecord(
  topics: Topics,
  room: string,
  message: { id?: string | undefined; user: string; text: string; author?: string | null },
): { messageId: string; record: OutgoingRecord } {
  const messageId = message.id ?? randomUUID();
  const value: Static<typeof ChatMessageValue> = { id: messageId, user: message.user, text: message.text };
  const record = outgoing(topics.chat, room, 'message', value);
  if (message.author !== undefined && message.author !== null) record.headers[AUTHOR_HEADER] = message.author;
  return { messageId, record };
}

export function chatDeleteRecord(topics: Topics, room: string, messageId: string): OutgoingRecord {
  const value: Static<typeof ChatDeleteValue> = { id: messageId };
  return outgoing(topics.chat, room, 'delete', value);
}

export function priceUpdateRecord(
  topics: Topics,
  symbol: string,
  update: { id?: string | undefined; price: number; currency: string },
): OutgoingRecord {
  // The id only serves to drop a retried publish's repeat: it is not forwarded to browsers.
  const value: Static<typeof PriceUpdateValue> & { id?: string } = { price: update.price, currency: update.currency };
  if (update.id !== undefined) value.id = update.id;
  return outgoing(topics.ticker, symbol, 'price_update', value);
}
