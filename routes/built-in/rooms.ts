import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { builtInTopics, ChatText, ChatUser, MessageId, chatDeleteRecord, chatEditRecord, chatMessageRecord } from '../../src/channels/contract.ts';
import { channelKey, decodeRecord, editDedupId, MESSAGE_ID_PATTERN } from '../../src/channels/records.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { MAX_CURSOR_LENGTH } from '../../src/connection/cursor.ts';
import { httpError } from '../../plugins/errors.ts';
import { AcceptedReply, errorReplies, errorReply, PublisherId, RoomParams } from '../schemas.ts';
import { publishAuthReplies as authReplies, publishDocs as docs, publishing } from '../publish.ts';
import { channelStream } from '../streams.ts';
import { hasBodyId, shardGuard, shardReplies } from '../shard-guard.ts';

/** Longest a delete or an edit of a message this replica does not know yet waits for its consumer to catch up with the partition. */
const CATCH_UP_TIMEOUT_MS = 2000;

/** What the gateway knows of a message it is asked to modify, from Kafka alone. */
type KnownMessage = { found: true; author: string | null; deletionEventId: string | null } | { found: false; reason: string };

/** The `?eventId=` a delete or an edit may send to name a message older than the ledger's window. */
const MessageLocator = Type.Object(
  {
    eventId: Type.Optional(Type.String({
      minLength: 1,
      maxLength: MAX_CURSOR_LENGTH,
      pattern: '^[A-Za-z0-9_-]+$',
      description: 'The `eventId` the post of this message answered (the SSE `id` of its `message` event in a single-room stream): lets the gateway read a message older than `HISTORY_MAX_AGE_MS` back from Kafka to learn its author.',
    })),
  },
  { additionalProperties: false },
);
const MessageParams = Type.Object({ room: RoomParams.properties.room, id: MessageId });

/**
 * The built-in chat kind's own routes: a room's stream at its historical path, and messages
 * posted, edited and deleted with ownership (the author is the verified token's, README "Message
 * ownership"). Publishing answers 202 only once Kafka acknowledged the record.
 */
const roomRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const topics = builtInTopics(app.config);
  const { publishOnce, guarded } = publishing(app);

  channelStream(app, '/events/:room', app.channels.get('room'), 'room', "A room's chat events");

  app.post(
    '/rooms/:room/messages',
    {
      schema: {
        summary: 'Post a chat message to a room',
        description: 'With auth on, `user` is taken from the token (`name`, else `sub`) and the body\'s `user` is ignored.',
        params: RoomParams,
        body: Type.Object({ id: PublisherId, user: Type.Optional(ChatUser), text: ChatText }, { additionalProperties: false }),
        response: {
          202: AcceptedReply,
          ...errorReplies,
          ...authReplies,
          ...shardReplies,
          // The shard answer first: it alone has `elsewhere` (the first schema that fits serializes).
          409: Type.Union(
            [
              shardReplies[409],
              errorReply('The `id` belongs to a message of another author in this room (posted within HISTORY_MAX_AGE_MS): pick another id'),
            ],
            { description: 'The `id` belongs to a message of another author in this room (posted within HISTORY_MAX_AGE_MS): pick another id; or, sharded, the room lives on another shard group (`elsewhere`)' },
          ),
        },
        ...docs,
      },
      // With an `id` the answer depends on the room's message ledger (the ownership check, a
      // retry answered with the first record): sharded, only the group consuming the room's
      // partition has it. Without one, any replica publishes.
      preHandler: [shardGuard('room', 'room', hasBodyId), ...guarded('room', 'room')],
    },
    async (request, reply) => {
      // Nobody posts as someone else: a token's identity replaces whatever the body claims.
      const user = request.publisher?.displayName ?? request.body.user;
      if (user === undefined) {
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: "body must have required property 'user'" });
      }
      const { room } = request.params;
      // The author header comes from the verified token only: it is what ownership is judged by.
      const author = request.publisher?.service === null ? request.publisher.identity : null;
      // Nobody attaches a message to someone else's id (a delete names ids, so it would reach
      // both): a token holder may reuse an id only for a retry of its own message.
      const owner = author === null || request.body.id === undefined ? undefined : app.dispatcher.messageEntry('room', room, request.body.id);
      if (owner !== undefined && owner.author !== author) {
        return reply.code(409).send({ statusCode: 409, error: 'Conflict', message: `id "${request.body.id}" belongs to another author's message in this room: pick another id` });
      }
      const { messageId, record } = chatMessageRecord(topics, room, { id: request.body.id, user, text: request.body.text, author });
      const eventId = await publishOnce(channelKey('room', room), 'message', request.body.id, () => record);
      return reply.code(202).send({ id: messageId, eventId });
    },
  );

  /**
   * The message `id` of the room: from the message ledger (every message whose Kafka timestamp
   * is within HISTORY_MAX_AGE_MS; after waiting for this replica to have consumed what the
   * partition held when asked, so that a message posted a moment ago is known), else from the
   * record at `eventId` read back from Kafka. Never from the request alone: an `eventId` only
   * says where to look, and the record found there must be that message.
   */
  const findMessage = async (room: string, id: string, eventId: string | undefined): Promise<KnownMessage> => {
    const { dispatcher, bus } = app;
    const known = (entry: NonNullable<ReturnType<typeof dispatcher.messageEntry>>): KnownMessage => ({
      found: true,
      author: entry.author,
      deletionEventId:
        entry.deletion === null ? null : app.eventIdFor({ topic: topics.chat, partition: entry.deletion.partition, offset: String(entry.deletion.offset) }),
    });
    let entry = dispatcher.messageEntry('room', room, id);
    if (entry !== undefined) return known(entry);
    const partitions = dispatcher.partitionCount(0);
    if (partitions > 0) {
      const partition = dispatcher.partitionOf(channelKey('room', room)) ?? partitionForKey(room, partitions);
      const next = dispatcher.nextOffset(0, partition) ?? 0;
      // Asked afresh (a cached end could predate the record just posted): only a delete of a
      // message this replica does not know pays for it, never a post.
      const end = bus.rangeReader?.endOffset !== undefined
        ? await bus.rangeReader.endOffset(topics.chat, partition, Number.MAX_SAFE_INTEGER)
        : Number(bus.partitionPositions().find((position) => position.topic === topics.chat && position.partition === partition)?.highWatermark ?? 0);
      if (end !== null && end > next && (await dispatcher.whenConsumed(0, partition, end - 1, CATCH_UP_TIMEOUT_MS))) {
        entry = dispatcher.messageEntry('room', room, id);
        if (entry !== undefined) return known(entry);
      }
    }
    const window = `HISTORY_MAX_AGE_MS (${app.config.historyMaxAgeMs} ms)`;
    if (eventId === undefined) {
      return { found: false, reason: `no message "${id}" in room "${room}" within the last ${window}; for an older one, send ?eventId= with the event id its post answered` };
    }
    const entries = app.cursorCodec.decode(eventId);
    const position = entries?.length === 1 ? entries[0] : undefined;
    if (position === undefined || position.slot !== 0 || position.next < 1) throw httpError(400, 'querystring/eventId is not the event id of a message of this gateway');
    if (position.partition >= dispatcher.partitionCount(0)) return { found: false, reason: 'the event id points at no partition of the chat topic' };
    if (bus.rangeReader === undefined) return { found: false, reason: `no message "${id}" in room "${room}": this bus keeps nothing older than ${window}` };
    const offset = position.next - 1;
    const result = await bus.rangeReader.read(topics.chat, position.partition, offset, offset + 1, room, 1);
    const record = result.expired ? undefined : result.records.find((candidate) => Number(candidate.offset) === offset);
    const decoded = record === undefined ? undefined : decodeRecord(record, app.channels);
    if (
      record === undefined ||
      decoded?.ok !== true ||
      decoded.event.type !== 'message' ||
      decoded.event.messageId !== id ||
      dispatcher.wasSkippedRepeat(record.topic, record.partition, offset)
    ) {
      return { found: false, reason: `the event id does not point at message "${id}" of room "${room}" (or Kafka no longer holds it)` };
    }
    return { found: true, author: decoded.event.author, deletionEventId: null };
  };

  /**
   * The message `id` of the room as the request may modify it (edit or delete): 404 (an
   * httpError) when the gateway does not know it (see `findMessage`), 403 when it is not the
   * requester's to modify (`authorizeModification`: its author, a moderator of the room, a service).
   */
  const modifiableMessage = async (request: FastifyRequest, room: string, id: string, eventId: string | undefined) => {
    const message = await findMessage(room, id, eventId);
    if (!message.found) throw httpError(404, message.reason);
    app.authorizeModification(request, message.author);
    return message;
  };
  // The message ledger is the room's partition's: sharded, only its group can edit or delete.
  const modification = [shardGuard('room', 'room'), app.publishRateLimit.perIp, app.authorizePublishing('room', { moderation: true, param: 'room' }), app.publishRateLimit.perIdentity];
  const whoMayModify = (verb: string) =>
    `Only the message's author (the token whose \`sub\` posted it), a token whose \`moderate\` claim covers the room, or a service key may ${verb} it (403 for others; anyone with auth off). ` +
    'The gateway knows the author of every message of the last `HISTORY_MAX_AGE_MS`; for an older one still in Kafka, send `?eventId=` with the event id its post answered. ' +
    '404 for a message it does not know.';
  const modificationRefusals = {
    403: errorReply('The token does not grant publishing to or moderating the room, or the message is someone else\'s and the token does not moderate the room'),
    404: errorReply('No such message: never posted in this room, or older than HISTORY_MAX_AGE_MS without an `eventId` pointing at it'),
  };

  app.patch(
    '/rooms/:room/messages/:id',
    {
      schema: {
        summary: 'Edit a chat message (publishes an `edit` event)',
        description:
          `${whoMayModify('edit')} ` +
          'Answers once Kafka acknowledged the `edit` record; subscribers get `edit` `{room, id, text, ts}` after the message, in order. ' +
          'Every edit is a new one; to retry one safely send the same `editId`: a repeat of (message, `editId`) within `DEDUP_WINDOW_MS` is not delivered again. ' +
          '409 for a message already deleted.',
        params: MessageParams,
        querystring: MessageLocator,
        body: Type.Object(
          {
            text: ChatText,
            editId: Type.Optional(Type.String({
              pattern: MESSAGE_ID_PATTERN,
              minLength: 1,
              maxLength: 64,
              description: 'Your id for this edit (a UUID is a good choice): send it again when you retry after a 503 or a lost answer, and the edit is delivered once. Without it, each request is a new edit.',
            })),
          },
          { additionalProperties: false },
        ),
        response: {
          202: AcceptedReply,
          ...errorReplies,
          ...authReplies,
          ...modificationRefusals,
          ...shardReplies,
          409: Type.Union([shardReplies[409], errorReply('The message was deleted: there is nothing left to edit')], {
            description: 'The message was deleted: there is nothing left to edit; or, sharded, the room lives on another shard group (`elsewhere`)',
          }),
        },
        ...docs,
      },
      preHandler: modification,
    },
    async (request, reply) => {
      const { room, id } = request.params;
      const message = await modifiableMessage(request, room, id, request.query.eventId);
      const channel = channelKey('room', room);
      const { text, editId } = request.body;
      const dedupId = editId === undefined ? undefined : editDedupId(id, editId);
      // A retry of an edit written before the delete still answers with that edit.
      const written = dedupId === undefined ? undefined : app.dispatcher.firstRecordOf(channel, 'edit', dedupId);
      if (written === undefined && message.deletionEventId !== null) {
        return reply.code(409).send({ statusCode: 409, error: 'Conflict', message: `message "${id}" of room "${room}" was deleted: there is nothing to edit` });
      }
      const eventId = await publishOnce(channel, 'edit', dedupId, () => chatEditRecord(topics, room, { messageId: id, text, editId }));
      return reply.code(202).send({ id, eventId });
    },
  );

  app.delete(
    '/rooms/:room/messages/:id',
    {
      schema: {
        summary: 'Delete a chat message (publishes a `delete` event)',
        description: `${whoMayModify('delete')} Safe to retry: deleting a message already deleted answers 202 with the first delete's event id.`,
        params: MessageParams,
        querystring: MessageLocator,
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies, ...modificationRefusals, ...shardReplies },
        ...docs,
      },
      preHandler: modification,
    },
    async (request, reply) => {
      const { room, id } = request.params;
      const message = await modifiableMessage(request, room, id, request.query.eventId);
      // Already deleted: the same answer as the first delete, nothing written again.
      if (message.deletionEventId !== null) return reply.code(202).send({ id, eventId: message.deletionEventId });
      const eventId = await publishOnce(channelKey('room', room), 'delete', id, () => chatDeleteRecord(topics, room, id));
      return reply.code(202).send({ id, eventId });
    },
  );
};

export default roomRoutes;
