import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { builtInTopics, Currency, Price, priceUpdateRecord } from '../../src/channels/contract.ts';
import { channelKey } from '../../src/channels/records.ts';
import { HISTORY_WINDOW_NAMES } from '../../src/charts/chart-history.ts';
import { AcceptedReply, authReplies as readAuthReplies, errorReplies, errorReply, internalError, PublisherId, streamSecurity, SymbolParams } from '../schemas.ts';
import { publishAuthReplies as authReplies, publishDocs as docs, publishing } from '../publish.ts';
import { channelStream } from '../streams.ts';
import { hasBodyId, shardGuard, shardReplies } from '../shard-guard.ts';

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

/**
 * The built-in ticker kind's own routes: a symbol's stream at its historical path, prices
 * published (202 once Kafka acknowledged), and chart history (kept by plugins/charts.ts: a thin
 * read of memory per request).
 */
const tickerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const topics = builtInTopics(app.config);
  const { publishOnce, guarded } = publishing(app);
  const { history, backfill } = app.chartHistory;

  channelStream(app, '/tickers/:symbol/events', app.channels.get('ticker'), 'symbol', "A ticker symbol's price updates");

  app.post(
    '/tickers/:symbol/prices',
    {
      schema: {
        summary: 'Publish a price for a ticker symbol',
        params: SymbolParams,
        body: Type.Object({ id: PublisherId, price: Price, currency: Currency }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies, ...shardReplies },
        ...docs,
      },
      // With an `id`, a retry is answered from the ledger of the symbol's partition: sharded,
      // only its group has it. Without one, any replica publishes.
      preHandler: [shardGuard('ticker', 'symbol', hasBodyId), ...guarded('ticker', 'symbol')],
    },
    async (request, reply) => {
      const { symbol } = request.params;
      const eventId = await publishOnce(channelKey('ticker', symbol), 'price_update', request.body.id, () => priceUpdateRecord(topics, symbol, request.body));
      return reply.code(202).send({ eventId });
    },
  );


  app.get(
    '/tickers/:symbol/history',
    {
      schema: {
        summary: "A ticker symbol's recent prices, for charts",
        description:
          'The last price per time bucket over the window: about 300 points at most. On Kafka, a replica reads the last 24 h of ' +
          'the ticker topic back at startup (`backfilling` is true meanwhile), then follows live prices. ' +
          'Needs the right to read the symbol, as its stream does (a token, unless the symbol is public per PUBLIC_TICKERS or auth is off).',
        params: SymbolParams,
        querystring: Type.Object(
          {
            window: Type.Optional(Type.Enum(HISTORY_WINDOW_NAMES, { default: '5m', description: 'How far back the chart reaches' })),
            // Declared, as this query allows nothing else: the read grant is checked as for streams, which take `?token=` too.
            token: Type.Optional(Type.String({ description: 'The token, when not sent as Authorization: Bearer or the cookie (the tokenQuery scheme)' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: HistoryReply, 400: errorReply('An invalid symbol or window'), ...readAuthReplies, ...internalError, ...shardReplies },
        tags: ['history'],
        security: streamSecurity,
      },
      // A replica keeps the charts of the symbols its partitions carry only.
      preHandler: shardGuard('ticker', 'symbol'),
    },
    async (request) => {
      const { symbol } = request.params;
      // The prices are the symbol's stream in another shape: the same read right (401/403), no stream slot.
      await request.authorizeSubscription([{ kind: 'ticker', name: symbol }], { stream: false });
      return { ...history.read(symbol, request.query.window ?? '5m'), backfilling: backfill?.inProgress ?? false };
    },
  );
};

export default tickerRoutes;
