import type { BusRecord, HeaderValue } from '../bus/types.ts';
import { TIMESTAMP_FIELD, type ChannelKind, type ChannelRegistry, type EventType } from './kind.ts';

/**
 * How a consumed Kafka record becomes an event (README, "Kafka record contract"): the topic
 * names the kind, the key is the channel, the kind's event-type header (or its default type)
 * the event type, the value a JSON object valid against that type's schema. Decoded and
 * validated once per record, whatever the number of subscribers.
 */

export const CHANNEL_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const CHANNEL_NAME = new RegExp(CHANNEL_NAME_PATTERN);
/** A message id: chosen by the publisher (a UUID is a good choice) or by the gateway. */
export const MESSAGE_ID_PATTERN = '^[A-Za-z0-9_.:-]{1,64}$';
const MESSAGE_ID = new RegExp(MESSAGE_ID_PATTERN);
/** Longest author the contract admits: the longest `sub` a token may carry (src/auth/claims.ts). */
export const MAX_AUTHOR_LENGTH = 256;

/**
 * The id by which a repeat of an edit is judged: the message id and the edit's own id, joined by
 * `/`, which no message id holds (MESSAGE_ID_PATTERN), so two pairs never give the same key.
 */
export function editDedupId(messageId: string, editId: string): string {
  return `${messageId}/${editId}`;
}

/** The hub's and history's key of a channel: its kind's name and its own, e.g. `room:lobby`. */
export function channelKey(kind: string, name: string): string {
  return `${kind}:${name}`;
}

export function isChannelName(name: string): boolean {
  return CHANNEL_NAME.test(name);
}

export interface DecodedEvent {
  channel: string;
  kind: ChannelKind;
  name: string;
  type: string;
  /** The SSE `data` line: the channel, the validated fields, and the Kafka timestamp. */
  data: string;
  /**
   * The publisher's message id (`id` of the value, when a string matching MESSAGE_ID_PATTERN):
   * a repeat of it in the channel shortly after is dropped (src/dispatch/dedup.ts).
   */
  messageId: string | undefined;
  /**
   * What a repeat of this record is judged by (src/dispatch/dedup.ts, with the channel and the
   * type): the message id, except for an edit of an owned message, which shares the message's
   * id with every other edit of it: `editDedupId(id, editId)` when the value carries a valid
   * edit id, else undefined (an edit without one is never a repeat).
   */
  dedupId: string | undefined;
  /**
   * Who wrote it, for kinds with message ownership: the author header when it keeps to the
   * contract (1 to MAX_AUTHOR_LENGTH characters), else null. Null for every other event.
   */
  author: string | null;
  timestamp: number;
}

export type DecodeResult = { ok: true; event: DecodedEvent } | { ok: false; reason: string };

/**
 * A header's text: of a repeated header the last value (as Kafka's Java client's `lastHeader`),
 * none for a null value (Kafka allows both; kafkajs hands them over as an array and as null).
 */
function headerText(value: HeaderValue): string | undefined {
  const last = Array.isArray(value) ? value.at(-1) : value;
  return last === undefined || last === null ? undefined : last.toString();
}

/**
 * The SSE data of a valid record: the channel, the declared fields, the record timestamp.
 * Always serialised again from the parsed, validated value, never copied from the record's
 * text: the text can differ from what was validated (a repeated key whose first copy the
 * parser dropped, `__proto__`, raw line breaks between tokens, number spellings), and only
 * what was validated may reach browsers. Undeclared producer fields never leak.
 */
function eventData(kind: ChannelKind, name: string, type: EventType, value: Record<string, unknown>, timestamp: number): string {
  // Declared keys, read as own properties only: a parsed `"__proto__"` key is an own property too.
  let data = `{${JSON.stringify(kind.name)}:${JSON.stringify(name)}`;
  for (const field of type.fields) {
    if (Object.hasOwn(value, field)) data += `,${JSON.stringify(field)}:${JSON.stringify(value[field])}`;
  }
  return `${data},"${TIMESTAMP_FIELD}":${timestamp}}`;
}

/** Decodes and validates one record; a record breaking the contract gets a reason, never a throw. */
export function decodeRecord(record: BusRecord, registry: ChannelRegistry): DecodeResult {
  const kind = registry.byTopic(record.topic);
  if (kind === undefined) return { ok: false, reason: `unexpected topic ${record.topic}` };
  const name = record.key?.toString('utf8');
  if (name === undefined || !CHANNEL_NAME.test(name)) return { ok: false, reason: `key is not a valid ${kind.name} name` };
  const typeName = headerText(record.headers[kind.eventTypeHeader]) ?? kind.defaultEventType;
  if (typeName === undefined) return { ok: false, reason: `missing ${kind.eventTypeHeader} header` };
  const type = kind.eventTypes.get(typeName);
  if (type === undefined) return { ok: false, reason: `event type is not one of ${kind.name}'s` };
  if (record.value === null) return { ok: false, reason: 'empty value' };
  let value: unknown;
  try {
    value = JSON.parse(record.value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  if (!type.check(value)) return { ok: false, reason: `value does not match the ${typeName} schema` };
  const fields = value as Record<string, unknown>;
  const messageId = typeof fields.id === 'string' && MESSAGE_ID.test(fields.id) ? fields.id : undefined;
  const ownership = kind.ownership;
  let dedupId = messageId;
  if (ownership !== undefined && typeName === ownership.edited) {
    const editId = fields[ownership.editIdField];
    dedupId = messageId !== undefined && typeof editId === 'string' && MESSAGE_ID.test(editId) ? editDedupId(messageId, editId) : undefined;
  }
  return {
    ok: true,
    event: {
      channel: channelKey(kind.name, name),
      kind,
      name,
      type: typeName,
      data: eventData(kind, name, type, fields, record.timestamp),
      timestamp: record.timestamp,
      messageId,
      dedupId,
      author: ownership !== undefined && typeName === ownership.created ? authorOf(record, ownership.authorHeader) : null,
    },
  };
}

/** A record's author header when it keeps to the contract (1 to MAX_AUTHOR_LENGTH characters), else null. */
function authorOf(record: BusRecord, header: string): string | null {
  const author = headerText(record.headers[header]);
  return author !== undefined && author.length > 0 && author.length <= MAX_AUTHOR_LENGTH ? author : null;
}
