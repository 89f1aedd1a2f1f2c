import t from 'tap';
import { isPublic, mayModerate, mayPublish, maySubscribe, parseClaims, type Claims } from '../../src/auth/claims.ts';

function claims(payload: unknown): Claims {
  const result = parseClaims(payload);
  if (!result.ok) throw new Error(result.reason);
  return result.claims;
}

t.test('reads sub, name, grants and exp', async (t) => {
  const parsed = claims({ sub: 'u1', name: 'Ann', rooms: ['lobby', 'team-*'], tickers: ['BTC'], publish: ['lobby', 'room:team-a', 'ticker:ETH*'], exp: 2000000000 });
  t.equal(parsed.subject, 'u1');
  t.equal(parsed.displayName, 'Ann');
  t.same(parsed.read.room, ['lobby', 'team-*']);
  t.same(parsed.publish.room, ['lobby', 'team-a']);
  t.same(parsed.publish.ticker, ['ETH*']);
  t.equal(parsed.expiresAt, 2000000000000);
});

t.test('name defaults to sub; absent grants grant nothing', async (t) => {
  const parsed = claims({ sub: 'u2' });
  t.equal(parsed.displayName, 'u2');
  t.equal(parsed.expiresAt, null);
  t.notOk(maySubscribe(parsed, { kind: 'room', name: 'lobby' }));
  t.notOk(mayPublish(parsed, { kind: 'room', name: 'lobby' }));
});

t.test('malformed claims refuse the whole token', async (t) => {
  const bad: unknown[] = [
    null,
    'string',
    [],
    {},
    { sub: '' },
    { sub: 42 },
    { sub: 'x'.repeat(257) },
    { sub: 'u', name: '' },
    { sub: 'u', name: 'n'.repeat(65) },
    { sub: 'u', exp: 'tomorrow' },
    { sub: 'u', rooms: 'lobby' },
    { sub: 'u', rooms: [1] },
    { sub: 'u', rooms: ['te*m'] },
    { sub: 'u', tickers: ['a b'] },
    { sub: 'u', publish: ['ticker:'] },
    { sub: 'u', publish: ['ticker:B*C'] },
    { sub: 'u', rooms: new Array(1001).fill('a') },
  ];
  for (const payload of bad) {
    const result = parseClaims(payload);
    t.equal(result.ok, false, JSON.stringify(payload)?.slice(0, 60) ?? String(payload));
  }
});

t.test('subscribe and publish grants are separate, and per kind', async (t) => {
  const parsed = claims({ sub: 'u', rooms: ['team-*'], tickers: ['BTC'], publish: ['team-a', 'ticker:BTC'] });
  t.ok(maySubscribe(parsed, { kind: 'room', name: 'team-b' }));
  t.notOk(maySubscribe(parsed, { kind: 'ticker', name: 'team-b' }), 'rooms do not grant tickers');
  t.ok(maySubscribe(parsed, { kind: 'ticker', name: 'BTC' }));
  t.notOk(maySubscribe(parsed, { kind: 'room', name: 'BTC' }));
  t.ok(mayPublish(parsed, { kind: 'room', name: 'team-a' }));
  t.notOk(mayPublish(parsed, { kind: 'room', name: 'team-b' }), 'reading does not grant publishing');
  t.ok(mayPublish(parsed, { kind: 'ticker', name: 'BTC' }));
  t.notOk(mayPublish(parsed, { kind: 'room', name: 'BTC' }), 'ticker:BTC is not room BTC');
});

t.test('public channels', async (t) => {
  const publicChannels = { room: ['lobby', 'public-*'], ticker: ['*'] };
  t.ok(isPublic(publicChannels, { kind: 'room', name: 'public-x' }));
  t.notOk(isPublic(publicChannels, { kind: 'room', name: 'team-a' }));
  t.ok(isPublic(publicChannels, { kind: 'ticker', name: 'BTC' }));
  t.notOk(isPublic({ room: [], ticker: [] }, { kind: 'room', name: 'lobby' }));
});

t.test('moderate: rooms by name or pattern (room: prefix allowed), never tickers; malformed refuses the token', async (t) => {
  const parsed = claims({ sub: 'mo', moderate: ['team-*', 'room:lobby'] });
  t.same(parsed.moderate.room, ['team-*', 'lobby']);
  t.ok(mayModerate(parsed, { kind: 'room', name: 'team-a' }));
  t.ok(mayModerate(parsed, { kind: 'room', name: 'lobby' }));
  t.notOk(mayModerate(parsed, { kind: 'room', name: 'other' }));
  t.notOk(mayModerate(parsed, { kind: 'ticker', name: 'team-a' }));
  t.notOk(mayPublish(parsed, { kind: 'room', name: 'team-a' }), 'moderating is not posting');
  t.same(claims({ sub: 'u' }).moderate, {});
  for (const moderate of ['team-*', ['a*b'], ['ticker:BTC'], [1]]) t.equal(parseClaims({ sub: 'u', moderate }).ok, false, JSON.stringify(moderate));
});
