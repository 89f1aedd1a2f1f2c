import t from 'tap';
import { channelRegistry, chatMessageRecord, EVENT_TYPE_HEADER } from '../../src/channels/contract.ts';
import { decodeRecord } from '../../src/channels/records.ts';
import type { BusRecord } from '../../src/bus/types.ts';

const topics = channelRegistry({ chat: 'chat', ticker: 'ticker' });

function record(overrides: Partial<BusRecord>): BusRecord {
  return {
    topic: 'chat',
    partition: 2,
    offset: '41',
    key: Buffer.from('lobby'),
    value: Buffer.from(JSON.stringify({ id: 'm1', user: 'ann', text: 'hi' })),
    headers: { [EVENT_TYPE_HEADER]: Buffer.from('message') },
    timestamp: 1700000000000,
    ...overrides,
  };
}

t.test('a valid record decodes to its channel, type and data with only known fields', async (t) => {
  const result = decodeRecord(
    record({ value: Buffer.from(JSON.stringify({ id: 'm1', user: 'ann', text: 'hi', secret: 'x' })) }),
    topics,
  );
  t.ok(result.ok);
  if (!result.ok) return;
  t.equal(result.event.channel, 'room:lobby');
  t.equal(result.event.type, 'message');
  t.same(JSON.parse(result.event.data), { room: 'lobby', id: 'm1', user: 'ann', text: 'hi', ts: 1700000000000 });
});

t.test('records that break the contract are refused with a reason, never thrown', async (t) => {
  const bad: Array<[string, Partial<BusRecord>]> = [
    ['not JSON', { value: Buffer.from('{oops') }],
    ['null value', { value: null }],
    ['no key', { key: null }],
    ['bad key', { key: Buffer.from('lob by') }],
    ['no type header', { headers: {} }],
    ['unknown type', { headers: { [EVENT_TYPE_HEADER]: 'explode' } }],
    ['prototype key as type', { headers: { [EVENT_TYPE_HEADER]: '__proto__' } }],
    ['ticker type on chat', { headers: { [EVENT_TYPE_HEADER]: 'price_update' } }],
    ['schema violation', { value: Buffer.from(JSON.stringify({ id: 'm1', user: 'ann' })) }],
    ['JSON but not an object', { value: Buffer.from('42') }],
    ['unknown topic', { topic: 'elsewhere' }],
  ];
  for (const [what, overrides] of bad) {
    const result = decodeRecord(record(overrides), topics);
    t.notOk(result.ok, what);
    if (!result.ok) t.type(result.reason, 'string');
  }
});

t.test('what the HTTP side produces is what the consumer side accepts', async (t) => {
  const { messageId, record: outgoing } = chatMessageRecord({ chat: 'chat', ticker: 'ticker' }, 'lobby', { user: 'ann', text: 'two\nlines' });
  const result = decodeRecord(
    record({ key: Buffer.from(outgoing.key), value: Buffer.from(outgoing.value), headers: outgoing.headers }),
    topics,
  );
  t.ok(result.ok);
  if (result.ok) t.match(JSON.parse(result.event.data), { id: messageId, text: 'two\nlines' });
});

t.test('subscribers get exactly the validated fields, serialised again, whatever the record text held', async (t) => {
  const big = 'x'.repeat(500_000);
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['spaces and raw line breaks between tokens', '\n { "text" : "a\\nb",\r\n "user":"ann", "id":"m1" }\n', { id: 'm1', user: 'ann', text: 'a\nb' }],
    ['a repeated key: the first copy (500 KB) is not forwarded', `{"id":"m1","user":"ann","text":"${big}","text":"ok"}`, { id: 'm1', user: 'ann', text: 'ok' }],
    ['a repeated key in contract order', '{"id":"m1","user":"ann","text":"first","text":"hi"}', { id: 'm1', user: 'ann', text: 'hi' }],
    ['a repeated id', '{"id":"evil","user":"ann","text":"hi","id":"m1"}', { id: 'm1', user: 'ann', text: 'hi' }],
    ['a prototype key is an extra, dropped', '{"id":"m1","user":"ann","text":"hi","__proto__":{"x":1}}', { id: 'm1', user: 'ann', text: 'hi' }],
    ['a key named like ours is an extra, dropped', '{"id":"m1","user":"ann","text":"hi","room":"elsewhere"}', { id: 'm1', user: 'ann', text: 'hi' }],
    ['unicode and escapes', '{"id":"m1","user":"\\u00e9","text":"</script>\\u2028"}', { id: 'm1', user: 'é', text: '</script>\u2028' }],
  ];
  for (const [what, value, fields] of cases) {
    const result = decodeRecord(record({ value: Buffer.from(value) }), topics);
    t.ok(result.ok, what);
    if (!result.ok) continue;
    // The exact bytes, not only what a parser makes of them: a parser drops repeated keys too.
    t.equal(result.event.data, JSON.stringify({ room: 'lobby', ...fields, ts: 1700000000000 }), what);
  }
});

t.test('a price is forwarded as the number validated, not as the record spelled it', async (t) => {
  const result = decodeRecord(
    record({
      topic: 'ticker',
      key: Buffer.from('BTC'),
      headers: { [EVENT_TYPE_HEADER]: 'price_update' },
      value: Buffer.from('{"price":1.50e1,"currency":"USD","price":12.50}'),
    }),
    topics,
  );
  t.ok(result.ok);
  if (result.ok) t.equal(result.event.data, '{"ticker":"BTC","price":12.5,"currency":"USD","ts":1700000000000}');
});
