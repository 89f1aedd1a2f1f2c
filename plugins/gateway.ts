import fp from 'fastify-plugin';
import type { Config } from '../src/config.ts';
import { createBus, type EventBus } from '../src/bus/index.ts';
import { createDispatcher, type Dispatcher } from '../src/dispatcher.ts';
import { Hub } from '../src/hub.ts';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    bus: EventBus;
    hub: Hub;
    dispatcher: Dispatcher;
    /** True from the moment shutdown begins: /readyz turns 503 so load balancers stop sending. */
    isShuttingDown(): boolean;
  }
}

export interface GatewayPluginOptions {
  config: Config;
  /** Tests may hand in a bus; otherwise Kafka or the embedded bus, from the config. */
  bus?: EventBus;
}

/**
 * Wires the domain into the app: the bus (Kafka or embedded), the hub, and the dispatcher
 * between them. The bus starts once the app is ready and keeps retrying in the background, so
 * the HTTP server answers (and /readyz explains) even while Kafka is unreachable.
 */
export default fp<GatewayPluginOptions>(
  async (app, { config, bus: givenBus }) => {
    const bus = givenBus ?? createBus(config, app.log);
    const hub = new Hub();
    const dispatcher = createDispatcher(hub, { chat: config.chatTopic, ticker: config.tickerTopic }, app.log);
    let shuttingDown = false;

    app.decorate('config', config);
    app.decorate('bus', bus);
    app.decorate('hub', hub);
    app.decorate('dispatcher', dispatcher);
    app.decorate('isShuttingDown', () => shuttingDown);

    app.addHook('onReady', async () => {
      bus.start(dispatcher.handle).catch((error: unknown) => app.log.error({ err: error }, 'the bus failed to start'));
    });
    app.addHook('preClose', async () => {
      shuttingDown = true;
    });
    app.addHook('onClose', async () => {
      await bus.close();
    });
  },
  { name: 'gateway', fastify: '5.x' },
);
