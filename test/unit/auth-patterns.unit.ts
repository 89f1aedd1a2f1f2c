import t from 'tap';
import { isValidPattern, matchesAny, matchesPattern } from '../../src/auth/patterns.ts';

t.test('exact names and trailing-* prefixes', async (t) => {
  t.ok(matchesPattern('lobby', 'lobby'));
  t.notOk(matchesPattern('lobby', 'lobby2'));
  t.notOk(matchesPattern('lobby', 'Lobby'), 'case-sensitive');
  t.ok(matchesPattern('team-*', 'team-a'));
  t.ok(matchesPattern('team-*', 'team-'));
  t.notOk(matchesPattern('team-*', 'team'));
  t.notOk(matchesPattern('team-*', 'xteam-a'));
  t.ok(matchesPattern('*', 'anything'));
});

t.test('a * anywhere but the end grants nothing', async (t) => {
  t.notOk(isValidPattern('te*m'));
  t.notOk(matchesPattern('te*m', 'team'));
  t.notOk(matchesPattern('*-a', 'team-a'));
  t.notOk(matchesPattern('**', 'x'));
  t.notOk(isValidPattern(''));
  t.notOk(isValidPattern('a b'));
  t.notOk(isValidPattern('a\n'));
  t.notOk(matchesPattern('', ''));
});

t.test('matchesAny', async (t) => {
  t.ok(matchesAny(['lobby', 'team-*'], 'team-x'));
  t.notOk(matchesAny(['lobby', 'team-*'], 'random'));
  t.notOk(matchesAny([], 'lobby'));
});
