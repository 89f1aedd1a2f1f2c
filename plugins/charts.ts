import fp from 'fastify-plugin';
import { priceUpdateOf, TickerBackfill, type TickerPartitionStart } from '../src/charts/chart-backfill.ts';
import { TickerHistory } from '../src/charts/chart-history.ts';
import { BUILT_IN_SLOTS } from '../src/channels/contract.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Per-symbol price history for charts, and its backfill from Kafka (null on the embedded bus). */
    chartHistory: { history: TickerHistory; backfill: TickerBackfill | null };
  }
}

const TICKER_SLOT = BUILT_IN_SLOTS.ticker;

/**
 * Chart history, downsampled per window and kept in memory (bounded work per request). Fed live
 * from the dispatcher (warm-up records included) and, on Kafka, backfilled once in the
 * background with what the ticker topic holds from 24 h ago up to where the consumer started.
 */
export default fp(
  async (app) => {
    const history = new TickerHistory();
    app.dispatcher.observe((event) => {
      const update = priceUpdateOf(event);
      if (update !== null) history.record(update.symbol, update);
    });

    const reader = app.bus.rangeReader;
    const backfill =
      reader === undefined || app.config.tickerBackfillMaxRecords === 0
        ? null
        : new TickerBackfill({
            history,
            reader,
            topic: app.config.tickerTopic,
            registry: app.dispatcher.registry,
            ready: () => app.bus.readiness().ready,
            partitionStarts: () => {
              const starts: TickerPartitionStart[] = [];
              for (let partition = 0; partition < app.dispatcher.partitionCount(TICKER_SLOT); partition++) {
                const start = app.dispatcher.partitionStart(TICKER_SLOT, partition);
                if (start !== undefined) starts.push({ partition, offset: start.offset });
              }
              return starts;
            },
            maxRecords: app.config.tickerBackfillMaxRecords,
            logger: app.log.child({ component: 'ticker-backfill' }),
          });
    if (backfill !== null) {
      app.addHook('onReady', async () => {
        void backfill.run();
      });
      app.addHook('onClose', async () => backfill.stop());
    }
    app.decorate('chartHistory', { history, backfill });
  },
  { name: 'chart-history', fastify: '5.x', dependencies: ['gateway'] },
);
