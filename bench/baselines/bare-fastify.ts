/**
 * The floor for one publish (bench/publish-cost.ts): a bare Fastify app with the gateway's
 * publish route — the same params and body schema, the same 202 reply schema, the same record
 * published on the embedded bus — and nothing else: no hooks, no logger, no rate limiting, no
 * auth, no metrics, no id sealing, and a bus consumer that drops what it is handed.
 * Env: PORT, HOST.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ChatText, ChatUser, MESSAGE_ID_PATTERN } from '../../src/channels/contract.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { AcceptedReply, RoomParams } from '../../routes/schemas.ts';

const topics = ['chat', 'ticker'];
const bus = new MemoryBus({ partitions: 6, topics });
await bus.start({ onPartitionsStart: () => undefined, onRecords: () => undefined });

const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
app.post(
  '/rooms/:room/messages',
  {
    schema: {
      params: RoomParams,
      body: Type.Object(
        { id: Type.Optional(Type.String({ pattern: MESSAGE_ID_PATTERN, minLength: 1, maxLength: 64 })), user: Type.Optional(ChatUser), text: ChatText },
        { additionalProperties: false },
      ),
      response: { 202: AcceptedReply },
    },
  },
  async (request, reply) => {
    const id = request.body.id ?? randomUUID();
    const position = await bus.publish({
      topic: 'chat',
      key: request.params.room,
      value: JSON.stringify({ id, user: request.body.user ?? 'anonymous', text: request.body.text }),
      headers: { 'event-type': 'message' },
    });
    return reply.code(202).send({ id, eventId: `${position.partition}-${position.offset}` });
  },
);

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' });
// A clean exit on SIGTERM, so that `node --cpu-prof` writes its profile.
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
