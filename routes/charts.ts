import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { HISTORY_WINDOW_NAMES } from '../src/charts/chart-history.ts';
import { errorReply, internalError, noSecurity, SymbolParams } from './schemas.ts';

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
}, { description: 'The chart points (empty for a symbol never seen)' });

/** Chart history (kept by plugins/charts.ts): a thin read of memory per request. */
const historyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { history, backfill } = app.chartHistory;

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
          { window: Type.Optional(Type.Enum(HISTORY_WINDOW_NAMES, { default: '5m', description: 'How far back the chart reaches' })) },
          { additionalProperties: false },
        ),
        response: { 200: HistoryReply, 400: errorReply('An invalid symbol or window'), ...internalError },
        tags: ['history'],
        security: noSecurity,
      },
    },
    async (request) => ({ ...history.read(request.params.symbol, request.query.window ?? '5m'), backfilling: backfill?.inProgress ?? false }),
  );
};

export default historyRoutes;
