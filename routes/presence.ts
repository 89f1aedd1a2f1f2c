import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ChannelName } from '../src/channels/contract.ts';
import type { ChannelKind } from '../src/channels/kind.ts';
import { authReplies, internalError, streamSecurity } from './schemas.ts';

const PresenceMemberReply = Type.Object({
  sub: Type.Union([Type.String(), Type.Null()], { description: "The token's `sub`; null for a self-named stream (auth off, `?name=`)" }),
  name: Type.String({ description: "The token's `name` (else its `sub`), or the self-chosen name" }),
  since: Type.Integer({ description: 'When it joined (its first stream here, on any replica): ms since the epoch' }),
  verified: Type.Optional(Type.Literal(false, { description: 'Present (false) for a self-chosen name: nobody vouches for it' })),
});

function presenceReply(kind: ChannelKind) {
  return Type.Object(
    {
      [kind.name]: Type.String({ description: 'The channel' }),
      count: Type.Integer({ description: 'Members listed: identities holding a stream on it, on any replica (one per identity, however many tabs)' }),
      anonymous: Type.Integer({ description: 'Streams without an identity, on any replica (counted, never listed)' }),
      members: Type.Array(PresenceMemberReply, { description: 'Earliest first' }),
    },
    { description: 'Who is in the channel now, over the whole cluster' },
  );
}

/** `GET path`: who is in a channel of `kind` (named by the path parameter `param`), for the whole cluster. */
function presenceRoute(app: FastifyInstance, path: string, kind: ChannelKind, param: string): void {
  app.withTypeProvider<TypeBoxTypeProvider>().get(
    path,
    {
      schema: {
        summary: `Who is in a ${kind.name === 'room' ? 'room' : `${kind.name} channel`} (presence)`,
        description:
          'Members (token identities; with auth off, streams that named themselves with `?name=`) and anonymous streams on the channel, ' +
          'over every replica. Needs the right to read the channel (as its stream does). Converges within about 2 × PRESENCE_INTERVAL_MS (plus Kafka delivery time) of a change on another replica ' +
          '(README, "Presence").',
        params: Type.Object({ [param]: ChannelName }),
        response: { 200: presenceReply(kind), 400: Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String() }, { description: 'A channel name that breaks the schema' }), ...authReplies, ...internalError },
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request) => {
      const name = (request.params as Record<string, string>)[param]!;
      await request.authorizeSubscription([{ kind: kind.name, name }], { stream: false });
      const summary = app.presence!.summary({ kind: kind.name, name });
      return {
        [kind.name]: name,
        count: summary.count,
        anonymous: summary.anonymous,
        members: summary.members.map((member) => ({ sub: member.sub, name: member.name, since: member.since, ...(member.verified ? {} : { verified: false as const }) })),
      };
    },
  );
}

/** Presence of every kind that tracks it: the rooms' at /rooms/:room/presence, declared kinds' at /streams/<kind>/:channel/presence. */
const presenceRoutes: FastifyPluginAsyncTypebox = async (app) => {
  if (app.presence === null) return;
  for (const kind of app.channels.kinds) {
    if (!kind.presence) continue;
    if (kind.name === 'room' && kind.builtIn) presenceRoute(app, '/rooms/:room/presence', kind, 'room');
    else presenceRoute(app, `/streams/${kind.name}/:channel/presence`, kind, 'channel');
  }
};

export default presenceRoutes;
