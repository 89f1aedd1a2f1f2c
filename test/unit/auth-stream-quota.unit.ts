import t from 'tap';
import { StreamQuota } from '../../src/auth/stream-quota.ts';
import { ApiKeys } from '../../src/auth/api-keys.ts';

t.test('streams per identity are capped and released', async (t) => {
  const quota = new StreamQuota(2);
  const first = quota.acquire('ann');
  const second = quota.acquire('ann');
  t.ok(first && second);
  t.equal(quota.acquire('ann'), null, 'third refused');
  t.ok(quota.acquire('bob'), 'others unaffected');
  first!();
  first!();
  t.equal(quota.count('ann'), 1, 'release is idempotent');
  t.ok(quota.acquire('ann'));
});

t.test('0 means no cap', async (t) => {
  const quota = new StreamQuota(0);
  for (let i = 0; i < 100; i++) t.ok(quota.acquire('ann'));
  t.equal(quota.count('ann'), 100);
});

t.test('API keys map to their service', async (t) => {
  const keys = new ApiKeys(new Map([['k'.repeat(24), 'pricing'], ['q'.repeat(30), 'chatbot']]));
  t.equal(keys.serviceFor('k'.repeat(24)), 'pricing');
  t.equal(keys.serviceFor('q'.repeat(30)), 'chatbot');
  t.equal(keys.serviceFor('k'.repeat(23)), null);
  t.equal(keys.serviceFor(''), null);
});
