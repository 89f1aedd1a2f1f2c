import t from 'tap';
import { bearerToken, cookieValue, findToken, MAX_TOKEN_LENGTH, queryToken, redactTokenInUrl } from '../../src/auth/token-source.ts';

t.test('Authorization: Bearer', async (t) => {
  t.same(bearerToken('Bearer abc.def.ghi'), { found: true, token: 'abc.def.ghi', source: 'header' });
  t.same(bearerToken('bearer   abc'), { found: true, token: 'abc', source: 'header' });
  t.same(bearerToken(undefined), { found: false });
  t.equal(bearerToken('Basic dXNlcjpwYXNz').found, false);
  t.ok((bearerToken('Basic dXNlcjpwYXNz') as { malformed?: string }).malformed);
  t.ok((bearerToken('Bearer a b') as { malformed?: string }).malformed);
  t.ok((bearerToken(`Bearer ${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`) as { malformed?: string }).malformed);
});

t.test('cookies', async (t) => {
  t.equal(cookieValue('a=1; token=xyz; b=2', 'token'), 'xyz');
  t.equal(cookieValue('a=1; mytoken=xyz', 'token'), undefined);
  t.equal(cookieValue('token="q%20v"', 'token'), 'q v');
  t.equal(cookieValue('token=%E0%A4%A', 'token'), '%E0%A4%A', 'undecodable stays raw');
  t.equal(cookieValue(undefined, 'token'), undefined);
  t.equal(cookieValue('garbage', 'token'), undefined);
});

t.test('query', async (t) => {
  t.equal(queryToken('/events/lobby?token=abc&x=1'), 'abc');
  t.equal(queryToken('/events/lobby?x=1'), undefined);
  t.equal(queryToken('/events/lobby'), undefined);
});

t.test('header beats cookie beats query', async (t) => {
  const all = { authorization: 'Bearer h', cookie: 'token=c', url: '/x?token=q' };
  t.same(findToken(all, 'token'), { found: true, token: 'h', source: 'header' });
  t.same(findToken({ ...all, authorization: undefined }, 'token'), { found: true, token: 'c', source: 'cookie' });
  t.same(findToken({ url: '/x?token=q' }, 'token'), { found: true, token: 'q', source: 'query' });
  t.same(findToken({ cookie: 'sid=c', url: '/x' }, 'sid'), { found: true, token: 'c', source: 'cookie' });
  t.same(findToken({}, 'token'), { found: false });
  t.equal(findToken({ authorization: 'Basic x', url: '/x?token=q' }, 'token').found, false, 'a malformed header is not silently skipped');
});

t.test('?token= is redacted from logged URLs', async (t) => {
  t.equal(redactTokenInUrl('/events/lobby?token=secret.jwt&x=1'), '/events/lobby?token=[redacted]&x=1');
  t.equal(redactTokenInUrl('/events?room=a&TOKEN=s'), '/events?room=a&TOKEN=[redacted]');
  t.equal(redactTokenInUrl('/events?room=a&%74oken=s'), '/events?room=a&%74oken=[redacted]', 'percent-encoded key');
  t.equal(redactTokenInUrl('/events?token'), '/events?token=[redacted]');
  t.equal(redactTokenInUrl('/events/lobby'), '/events/lobby');
  t.equal(redactTokenInUrl('/events?room=tokens'), '/events?room=tokens');
  t.notMatch(redactTokenInUrl('/e?a=1&token=s1&token=s2'), /s1|s2/);
});
