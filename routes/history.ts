import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { priceUpdateOf, TickerBackfill, type TickerPartitionStart } from '../src/ticker-backfill.ts';
import { HISTORY_WINDOW_NAMES, TickerHistory } from '../src/ticker-history.ts';
import { ErrorReply, SymbolParams } from './schemas.ts';

const TICKER_SLOT = 1;

const HistoryReply = Type.Object({
  symbol: Type.String(),
  window: Type.String(),
  bucketMs: Type.Integer({ description: 'Each point is the last price in a bucket this long' }),
  currency: Type.Union([Type.String(), Type.Null()]),
  points: Type.Array(Type.Object({ ts: Type.Number(), price: Type.Number() }), {
    description: 'Oldest first, at most one per bucket',
  }),
  backfilling: Type.Boolean({
    description: 'True while this replica is still reading older prices back from Kafka: fetch again later for a fuller chart',
  }),
});

/**
 * Chart history, downsampled per window, from memory (bounded work per request). Fed live from
 * the dispatcher (warm-up records included) and, on Kafka, backfilled once in the background
 * with what the ticker topic holds from 24 h ago up to where the consumer started.
 */
const historyRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
          topics: app.dispatcher.topics,
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

  app.get(
    '/tickers/:symbol/history',
    {
      schema: {
        summary: "A ticker symbol's recent prices, for charts",
        description:
          'The last price per time bucket over the window: about 300 points at most. On Kafka, a replica reads the last 24 h of ' +
          'the ticker topic back at startup (`backfilling` is true meanwhile), then follows live prices.',
        params: SymbolParams,
        querystring: Type.Object(
          { window: Type.Optional(Type.Union(HISTORY_WINDOW_NAMES.map((name) => Type.Literal(name)), { default: '5m' })) },
          { additionalProperties: false },
        ),
        response: { 200: HistoryReply, 400: ErrorReply },
      },
    },
    async (request) => ({ ...history.read(request.params.symbol, request.query.window ?? '5m'), backfilling: backfill?.inProgress ?? false }),
  );
};

export default historyRoutes;
