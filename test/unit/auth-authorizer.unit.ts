import t from 'tap';
import { ApiKeys } from '../../src/auth/api-keys.ts';
import { decideModification, decidePublish, decideSubscription, type Publisher, type AuthPolicy, type VerifyToken } from '../../src/auth/authorizer.ts';

const policy: AuthPolicy = { enabled: true, cookieName: 'token', publicChannels: { room: ['lobby', 'public-*'], ticker: [] }, requireExpiry: false };
const tokens: Record<string, unknown> = {
  ann: { sub: 'ann', name: 'Ann', rooms: ['team-*'], tickers: ['BTC'], publish: ['team-a', 'ticker:BTC'], exp: 2000000000 },
  badclaims: { sub: 'x', rooms: 'team-a' },
  mo: { sub: 'mo', moderate: ['team-*'] },
};
const verify: VerifyToken = async (token) => {
  if (token === 'expired') throw Object.assign(new Error('x'), { code: 'FAST_JWT_EXPIRED' });
  if (token in tokens) return tokens[token];
  throw Object.assign(new Error('bad sig with secret stuff'), { code: 'FAST_JWT_INVALID_SIGNATURE' });
};
const room = (name: string) => ({ kind: 'room' as const, name });

t.test('auth off grants everything, anonymously', async (t) => {
  t.same(await decideSubscription({ ...policy, enabled: false }, verify, {}, [room('team-a')]), { ok: true, value: { identity: null, expiresAt: null } });
});

t.test('subscription statuses', async (t) => {
  t.same(await decideSubscription(policy, verify, {}, [room('team-a')]), { ok: false, statusCode: 401, reason: 'missing token' });
  t.same(await decideSubscription(policy, verify, { authorization: 'Bearer nope' }, [room('team-a')]), { ok: false, statusCode: 401, reason: 'token signature invalid' });
  t.same(await decideSubscription(policy, verify, { url: '/e?token=expired' }, [room('team-a')]), { ok: false, statusCode: 401, reason: 'token expired' });
  t.equal((await decideSubscription(policy, verify, { cookie: 'token=badclaims' }, [room('team-a')])).ok, false);
  const denied = await decideSubscription(policy, verify, { cookie: 'token=ann' }, [room('team-a'), room('secret')]);
  t.same(denied, { ok: false, statusCode: 403, reason: 'token does not grant room "secret"' });
  t.same(await decideSubscription(policy, verify, { cookie: 'token=ann' }, [room('team-a'), room('lobby'), { kind: 'ticker', name: 'BTC' }]), {
    ok: true,
    value: { identity: 'ann', displayName: 'Ann', expiresAt: 2000000000000 },
  });
});

t.test('public rooms need no token, and a bad one does not lock anyone out', async (t) => {
  t.same(await decideSubscription(policy, verify, {}, [room('lobby'), room('public-x')]), { ok: true, value: { identity: null, expiresAt: null } });
  t.same(await decideSubscription(policy, verify, { cookie: 'token=stale' }, [room('lobby')]), { ok: true, value: { identity: null, displayName: null, expiresAt: null } });
  t.same(await decideSubscription(policy, verify, { cookie: 'token=ann' }, [room('lobby')]), { ok: true, value: { identity: 'ann', displayName: 'Ann', expiresAt: null } });
});

t.test('publishing', async (t) => {
  const keys = new ApiKeys(new Map([['k'.repeat(24), 'pricing']]));
  t.same(await decidePublish(policy, verify, keys, { authorization: 'Bearer ann' }, room('team-a')), {
    ok: true,
    value: { identity: 'ann', displayName: 'Ann', service: null, moderator: false },
  });
  t.same(await decidePublish(policy, verify, keys, { authorization: 'Bearer ann' }, room('team-b')), {
    ok: false,
    statusCode: 403,
    reason: 'token does not grant publishing to room "team-b"',
  });
  t.equal((await decidePublish(policy, verify, keys, {}, room('team-a'))).ok, false);
  t.same(await decidePublish(policy, verify, keys, { apiKey: 'k'.repeat(24) }, room('anything')), {
    ok: true,
    value: { identity: 'service:pricing', displayName: null, service: 'pricing', moderator: false },
  });
  t.same(await decidePublish(policy, verify, keys, { apiKey: 'wrong' }, room('anything')), { ok: false, statusCode: 401, reason: 'invalid API key' });
  t.same(await decidePublish({ ...policy, enabled: false }, verify, new ApiKeys(new Map()), {}, room('x')), {
    ok: true,
    value: { identity: null, displayName: null, service: null, moderator: false },
  });
});

t.test('deleting needs a publish or a moderate grant; modifying a message needs to be its author, a moderator or a service', async (t) => {
  const keys = new ApiKeys(new Map([['k'.repeat(24), 'pricing']]));
  const asModerator = await decidePublish(policy, verify, keys, { authorization: 'Bearer mo' }, room('team-b'), { moderation: true });
  t.same(asModerator, { ok: true, value: { identity: 'mo', displayName: 'mo', service: null, moderator: true } });
  t.equal((await decidePublish(policy, verify, keys, { authorization: 'Bearer mo' }, room('team-b'))).ok, false, 'a moderator does not post without a publish grant');
  t.equal((await decidePublish(policy, verify, keys, { authorization: 'Bearer mo' }, room('lobby'), { moderation: true })).ok, false, 'nor moderate other rooms');

  const ann: Publisher = { identity: 'ann', displayName: 'Ann', service: null, moderator: false };
  const refused = { ok: false, statusCode: 403, reason: 'only the message\'s author, a moderator of the room (token claim "moderate") or a service may modify it' };
  t.same(decideModification(ann, 'ann'), { ok: true, value: undefined }, 'the author');
  t.same(decideModification(ann, 'bob'), refused, 'a stranger');
  t.same(decideModification(ann, null), refused, 'a message without author is nobody\'s');
  t.same(decideModification({ ...ann, moderator: true }, 'bob'), { ok: true, value: undefined }, 'a moderator');
  t.same(decideModification({ identity: 'service:pricing', displayName: null, service: 'pricing', moderator: false }, 'bob'), { ok: true, value: undefined }, 'a service');
  t.same(decideModification({ identity: null, displayName: null, service: null, moderator: false }, 'bob'), { ok: true, value: undefined }, 'auth off');
});
