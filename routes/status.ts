import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorReply, internalError, operatorSecurity } from './schemas.ts';
import { presenceTopic } from '../src/config.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * Marks an operator-only route: plugins/auth.ts then asks for a service API key whenever
     * tokens or service keys are configured.
     */
    admin?: boolean;
  }
}

/** A setting whose name says it holds a credential: never shown, whatever its value. */
const SECRET_NAME = /secret|password|token|key/i;
export const REDACTED = '[redacted]';

/**
 * The value with every credential-named field, at any depth, replaced by "[redacted]". Flags
 * (booleans) are not secrets and stay visible: whether something is set is an operator's
 * business.
 */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value) || value instanceof Set) return [...value].map(redactSecrets);
  if (value instanceof Map) return redactSecrets(Object.fromEntries(value));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([name, item]) => [
      name,
      SECRET_NAME.test(name) && typeof item !== 'boolean' ? REDACTED : redactSecrets(item),
    ]),
  );
}

const PartitionStatus = Type.Object({
  topic: Type.String(),
  partition: Type.Integer(),
  next: Type.String({ description: 'The next offset this replica will consume' }),
  highWatermark: Type.String({ description: "The partition's end offset as of the consumer's last fetch" }),
  lag: Type.Integer({ description: 'highWatermark - next: records not consumed yet' }),
});

const StatusReply = Type.Object({
  instanceId: Type.String(),
  startedAt: Type.String({ description: 'ISO 8601' }),
  uptimeSeconds: Type.Number(),
  bus: Type.Object({
    kind: Type.Enum(['kafka', 'memory']),
    brokers: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'null on the embedded bus' }),
    ready: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    clientErrors: Type.Optional(
      Type.Object(
        { consumer_crash: Type.Integer(), request_timeout: Type.Integer(), publish_failed: Type.Integer() },
        { description: 'Kafka client errors since startup, by kind (as sse_gateway_kafka_client_errors_total); absent on the embedded bus' },
      ),
    ),
    reconnects: Type.Optional(
      Type.Integer({ description: 'Times the Kafka client got back to the brokers after losing them; absent on the embedded bus' }),
    ),
  }),
  partitions: Type.Array(PartitionStatus),
  streams: Type.Object({
    open: Type.Integer(),
    openByKind: Type.Record(Type.String(), Type.Integer(), { description: 'Open streams by channel kind (room, ticker, every declared kind) and multi (several channels)' }),
    opened: Type.Integer(),
    closed: Type.Integer(),
    slowClientDisconnects: Type.Integer(),
    resumesFromMemory: Type.Integer(),
    resumesFromKafka: Type.Integer(),
    resumeResets: Type.Integer(),
  }),
  history: Type.Object({
    events: Type.Integer({ description: 'Events held in the in-memory resume history' }),
    channels: Type.Integer({ description: 'Rooms and symbols with history' }),
  }),
  channels: Type.Object({
    active: Type.Integer({ description: 'Channels (of every kind) with at least one open stream' }),
    kinds: Type.Array(
      Type.Object({
        name: Type.String(),
        topic: Type.String(),
        builtIn: Type.Boolean(),
        eventTypes: Type.Array(Type.String()),
        publishable: Type.Array(Type.String()),
        slowClients: Type.Enum(['cut', 'conflate']),
      }),
      { description: 'The channel kinds this replica streams: the built-ins and CHANNELS_FILE\'s' },
    ),
  }),
  chartHistory: Type.Object({
    symbols: Type.Integer({ description: 'Ticker symbols with chart history on this replica' }),
    backfill: Type.Union(
      [
        Type.Object({
          state: Type.Enum(['waiting', 'reading', 'done', 'failed', 'stopped']),
          recordsRead: Type.Integer(),
          recordsSkipped: Type.Integer({ description: 'Records that break the contract, skipped' }),
          symbols: Type.Integer({ description: 'Symbols whose chart got older prices' }),
          since: Type.Union([Type.Number(), Type.Null()], { description: 'The time read from (ms since the epoch), once known' }),
        }),
        Type.Null(),
      ],
      { description: 'Reading the last 24 h of prices back from Kafka at startup; null on the embedded bus or when turned off' },
    ),
  }),
  records: Type.Object({ consumed: Type.Integer(), skipped: Type.Integer(), deliveries: Type.Integer() }),
  presence: Type.Union(
    [
      Type.Object({
        topic: Type.String(),
        replica: Type.String({ description: "This process's id in its presence statements (new on every start)" }),
        localMembers: Type.Integer({ description: 'Members this replica holds streams for (in their leave grace included), over all channels' }),
        localChannels: Type.Integer({ description: 'Channels this replica holds anyone in' }),
        streamChannels: Type.Integer({ description: 'Channels with open streams on this replica (each holds its streams, the view they were last told and the pace of its deltas)' }),
        remoteStatements: Type.Integer({ description: "Other replicas' live statements held (one per channel and replica)" }),
        statementsPublished: Type.Integer(),
        statementBytes: Type.Integer(),
        publishFailures: Type.Integer(),
        statementsConsumed: Type.Integer(),
        recordsSkipped: Type.Integer({ description: 'Presence records that could not be read' }),
        framesWritten: Type.Integer({ description: '`presence` frames written to streams (snapshots and deltas)' }),
      }),
      Type.Null(),
    ],
    { description: 'Presence (README, "Presence"); null when no kind tracks it' },
  ),
  security: Type.Object(
    {
      auth: Type.Boolean({ description: 'Tokens are required (JWT_SECRET or JWT_PUBLIC_KEY_FILE is set)' }),
      serviceApiKeys: Type.Integer({ description: 'How many service API keys are configured' }),
      operatorKeyRequired: Type.Boolean({ description: '/status (and /metrics unless metricsPublic) need a service API key' }),
      metricsPublic: Type.Boolean(),
      cursorSecret: Type.Union([Type.Literal('configured'), Type.Literal('per-process')], {
        description: '`per-process`: CURSOR_SECRET is not set (embedded bus only); ids resume on this process only',
      }),
    },
    { description: 'Which protections are on: flags, never the secrets' },
  ),
  config: Type.Object({}, { additionalProperties: true, description: 'The settings in effect, credentials redacted' }),
}, { description: "This replica's state" });

/** `GET /status`: what an operator wants to know about this one replica, as JSON. */
const statusRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const startedAt = new Date();

  app.get(
    '/status',
    {
      config: { admin: true },
      schema: {
        summary: "This replica's state",
        description:
          'Instance, bus connection, consumed partitions with their lag, stream and channel counts, and the ' +
          'configuration with credentials redacted. Operator-only: needs a service API key (`X-API-Key` or `Authorization: Bearer`) whenever tokens or service keys are configured.',
        response: {
          200: StatusReply,
          401: errorReply('Tokens or service keys are configured, and no configured service key was sent'),
          ...internalError,
        },
        tags: ['operations'],
        security: operatorSecurity,
      },
    },
    async () => {
      const { config, bus, dispatcher, streamStats } = app;
      const readiness = bus.readiness();
      return {
        instanceId: config.instanceId,
        startedAt: startedAt.toISOString(),
        uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 100) / 10,
        bus: {
          kind: bus.kind,
          brokers: config.kafkaBrokers,
          ready: readiness.ready,
          ...(readiness.reason === undefined ? {} : { reason: readiness.reason }),
          ...(bus.stats === undefined ? {} : { clientErrors: { ...bus.stats.clientErrors }, reconnects: bus.stats.reconnects }),
        },
        partitions: bus
          .partitionPositions()
          .map((position) => ({ ...position, lag: Number(BigInt(position.highWatermark) - BigInt(position.next)) }))
          .sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition),
        streams: {
          open: app.openStreamCount(),
          openByKind: { ...streamStats.open },
          opened: streamStats.opened,
          closed: streamStats.closed,
          slowClientDisconnects: streamStats.slowClientDisconnects,
          resumesFromMemory: streamStats.resumesFromMemory,
          resumesFromKafka: streamStats.resumesFromKafka,
          resumeResets: streamStats.resets,
        },
        history: { events: app.history.totalEvents, channels: app.history.channelCount },
        channels: {
          active: app.hub.channelCount,
          kinds: app.channels.kinds.map((kind) => ({
            name: kind.name,
            topic: kind.topic,
            builtIn: kind.builtIn,
            eventTypes: [...kind.eventTypes.keys()],
            publishable: [...kind.publishable],
            slowClients: kind.conflate ? ('conflate' as const) : ('cut' as const),
          })),
        },
        chartHistory: {
          symbols: app.chartHistory.history.symbolCount,
          backfill: app.chartHistory.backfill === null ? null : { state: app.chartHistory.backfill.state, ...app.chartHistory.backfill.stats },
        },
        records: {
          consumed: dispatcher.stats.recordsConsumed,
          skipped: dispatcher.stats.recordsSkipped,
          deliveries: dispatcher.stats.deliveries,
        },
        presence:
          app.presence === null
            ? null
            : {
                topic: presenceTopic(config),
                replica: app.presence.replicaId,
                localMembers: app.presence.state.localMembers,
                localChannels: app.presence.state.localChannels,
                streamChannels: app.presence.state.streamChannels,
                remoteStatements: app.presence.state.remoteStatements,
                ...app.presence.stats,
              },
        security: {
          auth: app.authEnabled,
          serviceApiKeys: config.auth.serviceApiKeys.size,
          operatorKeyRequired: app.operatorKeyRequired,
          metricsPublic: config.auth.metricsPublic,
          cursorSecret: config.cursorSecretSource,
        },
        config: redactSecrets(config) as Record<string, unknown>,
      };
    },
  );
};

export default statusRoutes;
