import { Type, type TSchema } from 'typebox';
import { ChannelName, MESSAGE_ID_PATTERN } from '../src/channels/contract.ts';
import type { ChannelKind, EventType } from '../src/channels/kind.ts';
import { RESET_REASONS } from '../src/connection/subscription.ts';

/**
 * Reply and parameter schemas shared by several routes, and what the OpenAPI document at
 * `/docs/json` says about each route: every status its code can answer, how it authenticates
 * (the security schemes are declared in plugins/docs.ts) and its tag.
 */

const errorFields = { statusCode: Type.Integer(), error: Type.String(), message: Type.String() };

/** The error body, with what this status means on this route as the response's description. */
export function errorReply(description: string) {
  return Type.Object(errorFields, { description });
}

export const AcceptedReply = Type.Object(
  {
    id: Type.Optional(Type.String({ description: 'The chat message id (for DELETE)' })),
    eventId: Type.String({ description: 'The SSE id the event will carry' }),
  },
  { description: 'Kafka acknowledged the record: it will reach every stream of its channel' },
);

export const RoomParams = Type.Object({ room: ChannelName });
export const SymbolParams = Type.Object({ symbol: ChannelName });
export const ChannelParams = Type.Object({ channel: ChannelName });

/** The optional `id` of a published event: what makes retries safe (README, "Idempotent publishing"). */
export const PublisherId = Type.Optional(Type.String({
  pattern: MESSAGE_ID_PATTERN,
  minLength: 1,
  maxLength: 64,
  description:
    'Your id for this message (a UUID is a good choice). Send the same id when you retry after a 503 or a lost answer: ' +
    'a repeat of an id already seen in the room within `DEDUP_WINDOW_MS` is not delivered again (README, "Idempotent publishing"). ' +
    'Without it the gateway picks a new one, and a retry is a new message.',
}));

/** Answered by any route whose handler fails unexpectedly: the body says only "internal error". */
export const internalError = { 500: errorReply('A bug: the body says only "internal error", the log has the details') };

export const errorReplies = {
  400: errorReply('Malformed JSON, or a path parameter, query or body field that breaks the schema (the message names it)'),
  413: errorReply('The body is larger than BODY_LIMIT_BYTES'),
  415: errorReply('The body is not application/json'),
  503: errorReply(
    'Kafka did not acknowledge within PUBLISH_TIMEOUT_MS, or is not connected (with Retry-After). The outcome is unknown: the record may still be written',
  ),
  ...internalError,
};

// ---- tags and security ------------------------------------------------------------------

/** The operation groups of the document, in this order. */
export const TAGS = [
  { name: 'streams', description: 'Server-Sent Events: chat rooms and ticker symbols, resumable by event id' },
  { name: 'publish', description: 'Posting chat messages and prices: answered once Kafka acknowledged the record' },
  { name: 'history', description: 'Recent data for charts' },
  { name: 'operations', description: 'Health, readiness, metrics and status for load balancers and operators' },
] as const;

/**
 * Security scheme names (declared in plugins/docs.ts). With auth off (no JWT_SECRET nor
 * JWT_PUBLIC_KEY_FILE) no route asks for any of them.
 */
export const SECURITY = {
  bearer: 'bearerToken',
  cookie: 'tokenCookie',
  query: 'tokenQuery',
  apiKey: 'serviceApiKey',
} as const;

/** Streams: a token in a header, a cookie or `?token=`; none for public rooms and tickers. */
type SecurityRequirements = Array<Record<string, string[]>>;
export const streamSecurity: SecurityRequirements = [{ [SECURITY.bearer]: [] }, { [SECURITY.cookie]: [] }, { [SECURITY.query]: [] }, {}];
/** Publishing: a bearer token with a publish grant, or a service API key (never a cookie or `?token=`). */
export const publishSecurity: SecurityRequirements = [{ [SECURITY.bearer]: [] }, { [SECURITY.apiKey]: [] }];
/** Operator routes: a service API key (as X-API-Key, or as a bearer token: what Prometheus sends). */
export const operatorSecurity: SecurityRequirements = [{ [SECURITY.apiKey]: [] }];
/** Open to anyone (load balancers, Prometheus, the API docs). */
export const noSecurity: SecurityRequirements = [];

/** Refusals by the auth plugin, described once for every route that authenticates. */
export const authReplies = {
  401: errorReply('Auth is on and the token (or API key) is missing, malformed, badly signed or expired; with WWW-Authenticate'),
  403: errorReply('The token is valid but does not grant this channel'),
};

// ---- event streams ----------------------------------------------------------------------

/** The data of a channel event: the channel, the declared fields of the record value, its timestamp. */
function channelEventData(kind: ChannelKind, type: EventType) {
  const valueFields = (type.schema.properties ?? {}) as Record<string, TSchema>;
  const fields: Record<string, TSchema> = {};
  // A declared field may be absent from a record (not required): the data then lacks it too.
  const required = new Set((type.schema as { required?: string[] }).required ?? []);
  for (const field of type.fields) fields[field] = required.has(field) ? valueFields[field]! : Type.Optional(valueFields[field]!);
  return Type.Object(
    {
      [kind.name]: ChannelName,
      ...fields,
      ts: Type.Integer({ description: 'The Kafka record timestamp (the event time), ms since the epoch' }),
    },
    { additionalProperties: false },
  );
}

/** The events the gateway adds to any stream, besides its channels' events. */
const CONTROL_EVENTS: Array<{ event: string; description: string; data: TSchema }> = [
  {
    event: 'reset',
    description: 'The requested position cannot be honoured: events may have been missed. Reload state; the stream continues live',
    data: Type.Object({
      reason: Type.Union(RESET_REASONS.map((reason) => Type.Literal(reason))),
    }),
  },
  {
    event: 'lag',
    description: 'Sent before a replay that starts more than LAG_THRESHOLD_MS behind',
    data: Type.Object({ behindMs: Type.Integer({ description: 'How far behind the replay starts, ms' }) }),
  },
  { event: 'live', description: 'The replay announced by `lag` has caught up', data: Type.Object({}) },
  {
    event: 'overflow',
    description: 'The client fell more than STREAM_MAX_BUFFERED_BYTES behind: the stream ends; reconnect to resume',
    data: Type.Object({ reason: Type.String() }),
  },
  {
    event: 'unavailable',
    description:
      'This replica cannot take the stream now (starting, draining, at MAX_STREAMS): the stream ends after a `retry:` with the delay; EventSource reconnects (through a load balancer, often to another replica)',
    data: Type.Object({ reason: Type.String(), retryMs: Type.Integer({ description: 'The reconnect delay sent as `retry:`, ms' }) }),
  },
  {
    event: 'auth_expired',
    description: "The token's `exp` passed: the stream ends; reconnect with a fresh token to resume",
    data: Type.Object({ reason: Type.String() }),
  },
];

const PRESENCE_EVENT_DESCRIPTION =
  'Who is in the channel (README, "Presence"; kinds with `presence` on): first a snapshot (`snapshot: true`, `members`), before anything else, ' +
  'then deltas (`joined`, `left`) at most once per PRESENCE_INTERVAL_MS (PRESENCE_CROWD_INTERVAL_MS in a room with more than PRESENCE_CROWD_STREAMS streams on the replica); `count` (members listed) and `anonymous` (unnamed streams) are absolute. ' +
  'No `id:`, never replayed. `verified: false` marks a self-chosen name (auth off, `?name=`)';

/** The data of a `presence` event: a snapshot or a delta, the channel under its kind's name. */
function presenceEventData(kinds: readonly ChannelKind[]) {
  const member = Type.Object({
    sub: Type.Union([Type.String(), Type.Null()]),
    name: Type.String(),
    since: Type.Optional(Type.Integer({ description: 'When it joined, ms since the epoch (snapshots)' })),
    verified: Type.Optional(Type.Literal(false)),
  });
  return Type.Object({
    ...Object.fromEntries(kinds.map((kind) => [kind.name, Type.Optional(ChannelName)])),
    snapshot: Type.Optional(Type.Literal(true)),
    truncated: Type.Optional(Type.Literal(true, { description: 'The snapshot lists only the earliest 2,000 members (the route lists all)' })),
    members: Type.Optional(Type.Array(member)),
    joined: Type.Optional(Type.Array(member)),
    left: Type.Optional(Type.Array(member)),
    count: Type.Integer(),
    anonymous: Type.Integer(),
  });
}

/** A frame as its fields. Channel events carry an `id:` (the position after them); control events do not. */
function frame(event: string, description: string, data: TSchema, withId: boolean) {
  const id = Type.String({ description: 'Opaque resume cursor: send it back as Last-Event-ID' });
  return Type.Object(
    withId ? { event: Type.Literal(event), id, data } : { event: Type.Literal(event), data },
    { title: event, description },
  );
}

/**
 * The 200 of a stream route carrying the channel events of `kinds` (every event type each
 * declares), plus the gateway's control events. The body is
 * `text/event-stream`; its schema describes one frame as an object of its fields (`event`,
 * `id`, and `data`, the JSON of the data line).
 */
function streamOk(kinds: readonly ChannelKind[]) {
  const channelFrames = kinds.flatMap((kind) =>
    [...kind.eventTypes.values()].map((type) => frame(type.name, type.description ?? `A ${kind.name} event`, channelEventData(kind, type), true)),
  );
  const presenceKinds = kinds.filter((kind) => kind.presence);
  const controlFrames = [
    ...CONTROL_EVENTS.map(({ event, description, data }) => frame(event, description, data, false)),
    ...(presenceKinds.length === 0 ? [] : [frame('presence', PRESENCE_EVENT_DESCRIPTION, presenceEventData(presenceKinds), false)]),
    frame(
      'position',
      "The stream's position without a channel event (right after connecting, after each replay page): only its `id:` matters",
      Type.Object({}),
      true,
    ),
  ];
  return {
    description:
      'A text/event-stream that stays open: `retry:`, a `: connected` comment, an `id:` with no data (the position it joined at), ' +
      'then one frame per event. The schema shows each frame as its fields; `data` is one line of JSON.',
    content: {
      'text/event-stream': {
        schema: Type.Union([...channelFrames, ...controlFrames], { description: 'One SSE frame' }),
      },
    },
  };
}

/** Every status a stream route answers. */
export function streamReplies(kinds: readonly ChannelKind[]) {
  return {
    200: streamOk(kinds),
    400: errorReply('A name, `since` or `lastEventId` that breaks the schema, or (on /events) no channel or too many'),
    ...authReplies,
    429: errorReply(
      'Too many open streams from this address (MAX_STREAMS_PER_IP) or for this token (MAX_STREAMS_PER_IDENTITY); with Retry-After',
    ),
    // Starting, draining or at MAX_STREAMS answer 200 with `event: unavailable` and a `retry:`:
    // EventSource gives up for good on a 503, so none is sent.
    ...internalError,
  };
}
