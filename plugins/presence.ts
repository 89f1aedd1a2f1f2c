import fp from 'fastify-plugin';
import { presenceTopic } from '../src/config.ts';
import { PresenceService } from '../src/presence/service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Who is in each channel of a kind with `presence` on (README, "Presence"); null when no kind has it on. */
    presence: PresenceService | null;
  }
}

/** Longest a shutdown waits for its empty statements to be acknowledged. */
const GOODBYE_TIMEOUT_MS = 2000;

/**
 * Presence: a PresenceService fed by the dispatcher with the presence topic's records (a side
 * topic: no SSE ids, no history), publishing on the bus, started once the app is ready. On
 * close (after the streams were drained, before the bus closes: onClose hooks run in reverse
 * order of registration) it hands over: its last statements keep its members listed only while
 * its drained clients reconnect elsewhere (PresenceService.stop), so a rolling restart is no leave
 * and join, and members who do not come back leave then, not after the expiry bound.
 */
export default fp(
  async (app) => {
    const { config } = app;
    if (!app.channels.kinds.some((kind) => kind.presence)) {
      app.decorate('presence', null);
      return;
    }
    const topic = presenceTopic(config);
    const presence = new PresenceService({
      topic,
      intervalMs: config.presence.intervalMs,
      crowdStreams: config.presence.crowdStreams,
      crowdIntervalMs: config.presence.crowdIntervalMs,
      restateMs: config.presence.restateMs,
      leaveGraceMs: config.presence.leaveGraceMs,
      publish: (record) => app.bus.publish(record),
      logger: app.log.child({ component: 'presence' }),
      // Deltas to a crowded room go out in the hub's slices, never in one stretch of the loop.
      forEachSink: (sinks, each) => app.hub.sliced(sinks, each),
    });
    app.dispatcher.sideTopic(topic, presence.onRecords);
    app.decorate('presence', presence);
    app.addHook('onReady', async () => presence.start());
    // Its members stay listed while its drained clients come back elsewhere (the drain told the
    // service how long: plugins/event-stream.ts calls beginDrain).
    app.addHook('onClose', async () => presence.stop(GOODBYE_TIMEOUT_MS));
  },
  { name: 'presence', fastify: '5.x', dependencies: ['gateway'] },
);
