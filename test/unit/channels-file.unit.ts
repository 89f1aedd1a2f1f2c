import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from '../helpers/fixture.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';

/** CHANNELS_FILE is checked when the settings are read: every problem names the kind and the field. */

const kind = (overrides: Record<string, unknown> = {}) => ({ name: 'orders', topic: 'orders', eventTypes: { created: { schema: { type: 'object', properties: { a: { type: 'string' } } } } }, ...overrides });

t.test('bad declarations are refused with the kind and the field named', async (t) => {
  const dir = tempDir(t, 'channels-file-');
  const cases: Array<[string, unknown, RegExp]> = [
    ['a field of the wrong type', { kinds: [kind({ slowClients: 'drop' })] }, /channel kind "orders": slowClients must be equal to one of the allowed values/],
    ['an unknown field', { kinds: [kind({ publsh: ['created'] })] }, /channel kind "orders": publsh is not a field/],
    ['a missing field', { kinds: [{ name: 'orders', eventTypes: {} }] }, /channel kind "orders": topic is required/],
    ['a bad kind name', { kinds: [kind({ name: 'Orders!' })] }, /channel kind "Orders!": name must match pattern/],
    ['no event type', { kinds: [kind({ eventTypes: {} })] }, /channel kind "orders": eventTypes must NOT have fewer than 1 properties/],
    ['a schema that does not compile', { kinds: [kind({ eventTypes: { created: { schema: { type: 'object', properties: { a: { type: 'strin' } } } } } })] }, /channel kind "orders": eventTypes\.created\.schema is not a valid JSON Schema/],
    ['a schema of a non-object', { kinds: [kind({ eventTypes: { created: { schema: { type: 'string' } } } })] }, /channel kind "orders": eventTypes\.created\.schema\.type must be "object"/],
    ['a field the schema lacks', { kinds: [kind({ eventTypes: { created: { schema: { type: 'object' }, fields: ['b'] } } })] }, /channel kind "orders": eventTypes\.created\.fields names "b"/],
    ['a field named like the kind', { kinds: [kind({ eventTypes: { created: { schema: { type: 'object', properties: { orders: {} } } } } })] }, /channel kind "orders": eventTypes\.created\.fields may not carry "orders"/],
    ['a publish type it does not declare', { kinds: [kind({ publish: ['shipped'] })] }, /channel kind "orders": publish names "shipped"/],
    ['a default type it does not declare', { kinds: [kind({ defaultEventType: 'shipped' })] }, /channel kind "orders": defaultEventType names "shipped"/],
    ['a name taken by a built-in', { kinds: [kind({ name: 'room', topic: 'rooms2' })] }, /channel kind "room": name is already taken/],
    ['the topic of a built-in', { kinds: [kind({ topic: 'chat' })] }, /channel kind "orders": topic "chat" is already the topic of kind "room"/],
    ['a claim of a built-in', { kinds: [kind({ access: { claim: 'rooms' } })] }, /channel kind "orders": access\.claim "rooms" is already the claim of kind "room"/],
    ['two kinds on one topic', { kinds: [kind(), kind({ name: 'orders2' })] }, /channel kind "orders2": topic "orders" is already the topic of kind "orders"/],
    ['not JSON', '{"kinds": [', /is not JSON/],
    ['no kinds list', { orders: [] }, /the file must have required property 'kinds'/],
  ];
  for (const [what, content, expected] of cases) {
    const file = join(dir, `${what.replaceAll(' ', '-')}.json`);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    let error: unknown;
    try {
      loadConfig({ CHANNELS_FILE: file });
    } catch (caught) {
      error = caught;
    }
    t.type(error, ConfigError, `${what}: refused`);
    t.match((error as Error).message, /^invalid configuration: CHANNELS_FILE/, `${what}: names the setting`);
    t.match((error as Error).message, expected, `${what}: says what is wrong where`);
  }
  let missing: unknown;
  try {
    loadConfig({ CHANNELS_FILE: join(dir, 'nope.json') });
  } catch (caught) {
    missing = caught;
  }
  t.match((missing as Error).message, /cannot read .*nope\.json/, 'a file that is not there');
});

t.test('a good declaration loads with its defaults', async (t) => {
  const dir = tempDir(t, 'channels-file-');
  const file = join(dir, 'channels.json');
  writeFileSync(file, JSON.stringify({ kinds: [kind({ publish: ['created'], access: { public: ['demo-*'] } })] }));
  const config = loadConfig({ CHANNELS_FILE: file });
  t.equal(config.channelKinds.length, 1);
  t.equal(config.channelKinds[0]!.name, 'orders');
  t.same(loadConfig({}).channelKinds, [], 'none without the setting');
});

t.test("the README's complete declaration file loads as it stands", async (t) => {
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const example = /A complete declaration file:\s*```json\n([\s\S]*?)```/.exec(readme)?.[1];
  t.ok(example, 'the README has the example');
  const dir = tempDir(t, 'channels-file-');
  const file = join(dir, 'channels.json');
  writeFileSync(file, example ?? '');
  const config = loadConfig({ CHANNELS_FILE: file });
  t.same(config.channelKinds.map((kind) => kind.name), ['orders']);
});
