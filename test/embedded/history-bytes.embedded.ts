import t from 'tap';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { messageTexts, openStream } from '../helpers/sse-client.ts';
import { messages, post } from '../helpers/rooms.ts';
import { scrape, value } from '../helpers/metrics.ts';

/**
 * HISTORY_MAX_TOTAL_BYTES over HTTP on the embedded bus: large events evict older ones from the
 * resume history, a resume from an evicted position gets what any position older than the history
 * gets here (`reset`, reason `expired`: the embedded bus has no Kafka to read it back from), and a
 * resume from a position still held gets exactly the events it missed, from memory.
 */

/** 2000 control characters: each is 6 bytes in JSON (`\u0001`), ~37 KB an event as the history counts it. */
const big = (label: string) => `${label}:${'\u0001'.repeat(2000 - label.length - 1)}`;
const bigs = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => big(`e${from + i}`));
/** Room for three such events, not four (each ~37.5 KB). */
const BUDGET = 130_000;

t.test('embedded bus: a byte budget evicts the oldest large events; resumes from them get reset, from held ones exactly what was missed', async (t) => {
  const gateway = await startGateway(t, { historyMaxTotalBytes: BUDGET });
  const room = uniqueName('room');
  const watcher = await openStream(t, `${gateway.url}/events/${room}`);
  const early = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, [big('a')]);
  await messages(early, 1);
  early.close();

  await post(gateway, room, bigs(0, 6));
  const seen = await watcher.waitForEvents(7);
  t.same(messageTexts(seen), [big('a'), ...bigs(0, 6)], 'the live stream got everything');
  const history = gateway.app.history;
  t.ok(history.totalBytes <= BUDGET, `the history holds ${history.totalBytes} bytes, within ${BUDGET}`);
  t.equal(history.totalEvents, 3, 'three of these fit: the four oldest of the seven were evicted');
  t.equal(value((await scrape(gateway.url)).samples, 'sse_gateway_history_bytes'), history.totalBytes, 'the metric reports it');

  // From after `a` (the missed events start at e0, evicted): the gap cannot be filled from memory.
  const fromEvicted = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': early.lastEventId() });
  const [reset] = await fromEvicted.waitForEvents(1);
  t.equal(reset?.event, 'reset');
  t.same(JSON.parse(reset!.data), { reason: 'expired' });

  // From after e2 (the missed events e3-e5 are all held): exactly those, from memory, no reset.
  const resumesFromMemory = gateway.app.streamStats.resumesFromMemory;
  const afterE2 = seen.find((event) => messageTexts([event])[0] === big('e2'))!.id!;
  const fromHeld = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': afterE2 });
  t.same(await messages(fromHeld, 3), bigs(3, 6), 'e3, e4, e5, none repeated');
  t.equal(gateway.app.streamStats.resumesFromMemory, resumesFromMemory + 1, 'from memory');

  await post(gateway, room, ['live']);
  t.same(await messages(fromHeld, 4), [...bigs(3, 6), 'live'], 'then live');
  t.same(messageTexts(await fromEvicted.waitForEvents(2)), ['live'], 'the reset stream continues live');
  t.notOk(fromHeld.events.some((event) => event.event === 'reset'));
  t.ok(gateway.app.history.totalBytes <= BUDGET);
});
