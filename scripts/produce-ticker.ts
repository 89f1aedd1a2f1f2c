/**
 * Random-walk prices for a few symbols, straight to the ticker topic.
 * npm run produce:ticker -- --rate 20 --symbols BTC,ETH,DOGE [--count 1000]
 */
import { priceUpdateRecord } from '../src/channels/contract.ts';
import { runAtRate, startProducer } from './produce-common.ts';

const run = await startProducer({
  name: 'produce:ticker',
  description: 'Produces random-walk USD prices, round-robin over the symbols, to the ticker topic.',
  keys: { option: 'symbols', default: 'BTC,ETH,DOGE,SOL', what: 'ticker symbols' },
  topic: (config) => config.tickerTopic,
});
const symbols = run.keys;
const prices = new Map(symbols.map((symbol) => [symbol, 100 * (1 + Math.random())]));
const topics = { chat: run.config.chatTopic, ticker: run.config.tickerTopic };

await runAtRate('produce:ticker', run, async (n) => {
  const symbol = symbols[n % symbols.length]!;
  const price = Math.max(0.0001, prices.get(symbol)! * (1 + (Math.random() - 0.5) / 50));
  prices.set(symbol, price);
  const record = priceUpdateRecord(topics, symbol, { price: Number(price.toFixed(4)), currency: 'USD' });
  await run.producer.send({ topic: record.topic, acks: -1, messages: [{ key: record.key, value: record.value, headers: record.headers }] });
});
