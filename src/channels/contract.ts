import { randomUUID } from 'node:crypto';
import { Type, type Static } from 'typebox';
import type { OutgoingRecord } from '../bus/types.ts';
import { ChannelRegistry, compileKind, DEFAULT_EVENT_TYPE_HEADER, type BuiltInKindDeclaration, type ChannelKindDeclaration } from './kind.ts';
import { CHANNEL_NAME_PATTERN, MAX_AUTHOR_LENGTH, MESSAGE_ID_PATTERN } from './records.ts';

/**
 * The built-in channel kinds, chat rooms and ticker symbols, declared in the same format as
 * the kinds operators declare (src/channels/kind.ts), and the records the gateway's own publish
 * routes write for them (README, "Kafka record contract").
 */

export { CHANNEL_NAME_PATTERN, MAX_AUTHOR_LENGTH, MESSAGE_ID_PATTERN };
export const EVENT_TYPE_HEADER = DEFAULT_EVENT_TYPE_HEADER;
/**
 * The header naming who wrote a chat message: the token `sub` of the user it belongs to (README,
 * "Kafka record contract"). The gateway sets it from the verified identity, never from the
 * request; services producing straight to Kafka set it for a user they post for. Without it, a
 * message belongs to nobody: only moderators and services may delete it.
 */
export const AUTHOR_HEADER = 'author';

export const ChannelName = Type.String({ pattern: CHANNEL_NAME_PATTERN, minLength: 1, maxLength: 64 });
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
/**
 * An edit of message `id`: its new `text`. `editId` (optional, not forwarded) is the edit's own
 * id for idempotent publishing: a repeat of (message id, edit id) is dropped, while edits
 * without one are never taken for repeats (several edits of one message are not retries).
 */
export const ChatEditValue = Type.Object({ id: MessageId, text: ChatText, editId: Type.Optional(MessageId) }, { additionalProperties: true });
export const PriceUpdateValue = Type.Object({ price: Price, currency: Currency }, { additionalProperties: true });

/** The built-in kinds' topics (CHAT_TOPIC, TICKER_TOPIC). */
export interface Topics {
  chat: string;
  ticker: string;
}

/** The built-in kinds' topics as the settings name them. */
export function builtInTopics(settings: { chatTopic: string; tickerTopic: string }): Topics {
  return { chat: settings.chatTopic, ticker: settings.tickerTopic };
}

/**
 * Chat rooms: `message`, `edit` and `delete`, cut-and-resume for slow clients (no chat message may be
 * skipped), messages owned by their `author` header (src/dispatch/message-ledger.ts). Published
 * through its own routes (routes/built-in/rooms.ts), which set the author from the token.
 */
export function chatKind(topic: string): BuiltInKindDeclaration {
  return {
    name: 'room',
    topic,
    description: "A chat room's messages, their edits and deletions",
    eventTypes: {
      message: { schema: ChatMessageValue, fields: ['id', 'user', 'text'], description: 'A chat message' },
      edit: { schema: ChatEditValue, fields: ['id', 'text'], description: 'A chat message was edited: its new text' },
      delete: { schema: ChatDeleteValue, fields: ['id'], description: 'A chat message was deleted' },
    },
    slowClients: 'cut',
    access: { claim: 'rooms' },
    partitioning: 'murmur2',
    ownership: { authorHeader: AUTHOR_HEADER, created: 'message', edited: 'edit', editIdField: 'editId', deleted: 'delete' },
    presence: true,
  };
}

/** Ticker symbols: `price_update`, conflated for slow clients (only the latest price matters). */
export function tickerKind(topic: string): BuiltInKindDeclaration {
  return {
    name: 'ticker',
    topic,
    description: "A ticker symbol's prices",
    eventTypes: {
      price_update: { schema: PriceUpdateValue, fields: ['price', 'currency'], description: 'A new price' },
    },
    slowClients: 'conflate',
    access: { claim: 'tickers' },
    partitioning: 'murmur2',
    presence: false,
  };
}

/** Slots of the built-ins in SSE ids: fixed, so ids issued before declared kinds existed keep working. */
export const BUILT_IN_SLOTS = { room: 0, ticker: 1 } as const;

/**
 * The registry of a deployment: the built-ins (with their public patterns, PUBLIC_ROOMS and
 * PUBLIC_TICKERS) and the kinds declared in CHANNELS_FILE.
 */
export function channelRegistry(
  topics: Topics,
  options: { publicRooms?: readonly string[]; publicTickers?: readonly string[]; declared?: readonly ChannelKindDeclaration[]; historyMaxEvents?: number; roomPresence?: boolean } = {},
): ChannelRegistry {
  const chat = chatKind(topics.chat);
  chat.access = { ...chat.access, public: [...(options.publicRooms ?? [])] };
  // ROOM_PRESENCE=false: rooms without presence (no presence topic unless a declared kind asks for one).
  chat.presence = options.roomPresence ?? true;
  const ticker = tickerKind(topics.ticker);
  ticker.access = { ...ticker.access, public: [...(options.publicTickers ?? [])] };
  return new ChannelRegistry([
    compileKind(chat, { slot: BUILT_IN_SLOTS.room }),
    compileKind(ticker, { slot: BUILT_IN_SLOTS.ticker }),
    ...(options.declared ?? []).map((declaration) =>
      compileKind(declaration, options.historyMaxEvents === undefined ? {} : { historyMaxEvents: options.historyMaxEvents }),
    ),
  ]);
}

function outgoing(topic: string, key: string, type: string, value: Record<string, unknown>): OutgoingRecord {
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

/**
 * An `edit` record of message `messageId`: its new text. `editId`, when the editor chose one, is
 * written into the value so that a retry of the edit is dropped as a repeat (src/dispatch/dedup.ts).
 */
export function chatEditRecord(topics: Topics, room: string, edit: { messageId: string; text: string; editId?: string | undefined }): OutgoingRecord {
  const value: Static<typeof ChatEditValue> = { id: edit.messageId, text: edit.text };
  if (edit.editId !== undefined) value.editId = edit.editId;
  return outgoing(topics.chat, room, 'edit', value);
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
