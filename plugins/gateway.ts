import fp from 'fastify-plugin';
import { presenceTopic, type Config } from '../src/config.ts';
import { presenceSideTopic } from '../src/presence/topic.ts';
import { createBus, type EventBus } from '../src/bus/index.ts';
import { builtInTopics, channelRegistry } from '../src/channels/contract.ts';
import type { ChannelRegistry } from '../src/channels/kind.ts';
import type { Position } from '../src/bus/types.ts';
import { CursorCodec } from '../src/connection/cursor.ts';
import { Dispatcher, singleChannelEventId } from '../src/dispatch/dispatcher.ts';
import { RecentEvents } from '../src/hub/recent-events.ts';
import { Hub } from '../src/hub/hub.ts';
import { ShardMap } from '../src/bus/shards.ts';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    /** The channel kinds of this deployment: the built-ins and CHANNELS_FILE's (src/channels/kind.ts). */
    channels: ChannelRegistry;
    bus: EventBus;
    hub: Hub;
    history: RecentEvents;
    cursorCodec: CursorCodec;
    dispatcher: Dispatcher;
    /** Sharded mode (SHARD_PARTITIONS): the partitions this replica consumes and its peers; null = every partition. */
    shards: ShardMap | null;
    /** The SSE id a stream of the event's one channel shows for the event at `position`. */
    eventIdFor(position: Position): string;
    /** True from the moment shutdown begins: /readyz turns 503 so load balancers stop sending. */
    isShuttingDown(): boolean;
  }
}

export interface GatewayPluginOptions {
  config: Config;
  /** Tests may hand in a bus; otherwise Kafka or the embedded bus, from the config. */
  bus?: EventBus;
}

const HISTORY_SWEEP_INTERVAL_MS = 10_000;
/** Longest a shutdown waits for the bus (Kafka) to disconnect. */
export const BUS_CLOSE_TIMEOUT_MS = 5000;

/**
 * Wires the domain into the app: the bus (Kafka or embedded), the hub, the history and the
 * dispatcher between them. The bus starts once the app is ready and keeps retrying in the
 * background, so the HTTP server answers (and /readyz explains) even while Kafka is unreachable.
 */
export default fp<GatewayPluginOptions>(
  async (app, { config, bus: givenBus }) => {
    const topics = builtInTopics(config);
    const channels = channelRegistry(topics, {
      publicRooms: config.auth.publicRooms,
      publicTickers: config.auth.publicTickers,
      declared: config.channelKinds,
      roomPresence: config.presence.rooms,
    });
    // The presence topic is read besides the kinds' topics when some kind tracks presence (plugins/presence.ts).
    const sideTopics = channels.kinds.some((kind) => kind.presence) ? presenceSideTopic(presenceTopic(config), config.presence.restateMs) : {};
    const bus = givenBus ?? createBus(config, channels.topics, app.log, sideTopics);
    const hub = new Hub({ onError: (error) => app.log.error({ err: error }, 'a delivery to one stream failed; the others went on') });
    const history = new RecentEvents({
      maxEventsPerChannel: config.historyMaxEventsPerChannel,
      maxAgeMs: config.historyMaxAgeMs,
      maxTotalEvents: config.historyMaxTotalEvents,
      maxTotalBytes: config.historyMaxTotalBytes,
      maxEventsPerSlot: new Map(channels.kinds.flatMap((kind) => (kind.historyMaxEvents === undefined ? [] : [[kind.slot, kind.historyMaxEvents] as const]))),
    });
    const cursorCodec = new CursorCodec(config.cursorSecret, topics);
    // The window cannot reach further back than the warm-up read that teaches a fresh replica its ids.
    // Message authors are known as far back as the warm-up read reaches, on every replica alike.
    const dispatcher = new Dispatcher(hub, history, cursorCodec, channels, app.log, {
      dedupWindowMs: Math.min(config.dedupWindowMs, config.historyMaxAgeMs),
      ledgerWindowMs: config.historyMaxAgeMs,
    });
    let shuttingDown = false;

    if (config.cursorSecretSource === 'per-process') {
      // loadConfig refuses this with Kafka from the environment; an embedder handing in a config can still get here.
      const message =
        'CURSOR_SECRET is not set: event ids are sealed with a key made at startup, so they resume on this process only ' +
        '(not on another replica, not after a restart). Set the same CURSOR_SECRET (16+ characters) on every replica.';
      if (config.kafkaBrokers !== null) app.log.warn(message);
      else app.log.info(message);
    }

    app.decorate('config', config);
    app.decorate('channels', channels);
    app.decorate('bus', bus);
    app.decorate('hub', hub);
    app.decorate('history', history);
    app.decorate('cursorCodec', cursorCodec);
    app.decorate('dispatcher', dispatcher);
    app.decorate('shards', config.shardPartitions === null ? null : new ShardMap(config.shardPartitions, config.shardPeers));
    app.decorate('eventIdFor', (position: Position) =>
      singleChannelEventId(cursorCodec, dispatcher.slotOf(position.topic) ?? 0, position.partition, Number(position.offset)),
    );
    app.decorate('isShuttingDown', () => shuttingDown);

    // One shared timer ages out idle channels' history; appends age out busy ones as they go.
    const sweeper = setInterval(() => history.sweep(), HISTORY_SWEEP_INTERVAL_MS);
    sweeper.unref();

    app.addHook('onReady', async () => {
      bus.start(dispatcher).catch((error: unknown) => app.log.error({ err: error }, 'the bus failed to start'));
    });
    app.addHook('preClose', async () => {
      shuttingDown = true;
    });
    app.addHook('onClose', async () => {
      clearInterval(sweeper);
      await closeBus();
    });

    /**
     * Disconnecting from Kafka can wait on brokers that are down or recovering (kafkajs retries
     * leaving the group and its requests for tens of seconds): shutdown waits at most
     * BUS_CLOSE_TIMEOUT_MS for it, then goes on. Nothing is lost by that: every acknowledged
     * publish is in Kafka already, and a consumer that did not leave its group is dropped from it
     * by the broker's session timeout.
     */
    async function closeBus(): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timed out'>((resolve) => {
        timer = setTimeout(() => resolve('timed out'), BUS_CLOSE_TIMEOUT_MS);
      });
      const closed = bus.close().then(
        () => 'closed' as const,
        (error: unknown) => {
          app.log.warn({ err: error }, 'closing the bus failed');
          return 'closed' as const;
        },
      );
      const outcome = await Promise.race([closed, timedOut]);
      clearTimeout(timer);
      if (outcome === 'timed out') {
        app.log.warn({ timeoutMs: BUS_CLOSE_TIMEOUT_MS }, 'the bus did not close in time (Kafka unreachable?): shutting down without waiting for it');
      }
    }
  },
  { name: 'gateway', fastify: '5.x' },
);
