import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { HISTORY_WINDOW_NAMES, TickerHistory } from '../src/ticker-history.ts';
import { ErrorReply, SymbolParams } from './schemas.ts';

const HistoryReply = Type.Object({
  symbol: Type.String(),
  window: Type.String(),
  bucketMs: Type.Integer({ description: 'Each point is the last price in a bucket this long' }),
  currency: Type.Union([Type.String(), Type.Null()]),
  points: Type.Array(Type.Object({ ts: Type.Number(), price: Type.Number() }), {
    description: 'Oldest first, at most one per bucket',
  }),
});

/**
 * Chart history: what this replica has seen of a symbol since it started, downsampled per
 * window. Fed live from the dispatcher; Kafka is not read back at startup (yet), so a fresh
 * replica's charts begin empty and fill as prices arrive.
 */
const historyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const history = new TickerHistory();
  app.dispatcher.observe((event, record) => {
    if (event.type !== 'price_update') return;
    const { price, currency } = JSON.parse(event.data) as { price: number; currency: string };
    history.record(event.name, { price, currency, ts: record.timestamp });
  });

  app.get(
    '/tickers/:symbol/history',
    {
      schema: {
        summary: "A ticker symbol's recent prices, for charts",
        description: 'The last price per time bucket over the window: about 300 points at most.',
        params: SymbolParams,
        querystring: Type.Object(
          { window: Type.Optional(Type.Union(HISTORY_WINDOW_NAMES.map((name) => Type.Literal(name)), { default: '5m' })) },
          { additionalProperties: false },
        ),
        response: { 200: HistoryReply, 400: ErrorReply },
      },
    },
    async (request) => history.read(request.params.symbol, request.query.window ?? '5m'),
  );
};

export default historyRoutes;
