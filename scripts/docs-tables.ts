/**
 * The README's generated tables: configuration (from the reading functions' registry in
 * src/config.ts and SETTING_DESCRIPTIONS), metrics (from the registry `/metrics` serves,
 * with each metric's help text) and the built-in channel kinds' record contract (from their
 * declarations in src/channels/contract.ts). Each sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`
 * markers in README.md.
 *
 *   npm run docs:tables            rewrites README.md
 *   npm run docs:tables -- --check exits 1 when README.md differs from what the code says
 *
 * test/embedded/docs-tables.embedded.ts runs the check in `npm test`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../app.ts';
import { configWith, knownSettings, SETTING_DESCRIPTIONS } from '../src/config.ts';
import { channelRegistry } from '../src/channels/contract.ts';
import { CHANNEL_NAME_PATTERN } from '../src/channels/records.ts';

export const README = fileURLToPath(new URL('../README.md', import.meta.url));

/** A Markdown table cell: pipes escaped, no line breaks. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function code(text: string): string {
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
}

/** The configuration table: one row per variable, in the order `loadConfig` reads them. */
export function configurationTable(): string {
  const rows = knownSettings().map((setting) => {
    const meaning = SETTING_DESCRIPTIONS[setting.name];
    if (meaning === undefined) throw new Error(`${setting.name} has no entry in SETTING_DESCRIPTIONS (src/config.ts)`);
    const fallback = setting.default === 'unset' || setting.default.includes(' ') ? setting.default : code(setting.default);
    const allowed = setting.allowed === '' ? '' : setting.allowed.includes(' ') && !setting.allowed.startsWith('^') ? setting.allowed : code(setting.allowed);
    return `| ${code(setting.name)} | ${cell(fallback)} | ${cell(allowed)} | ${cell(meaning)} |`;
  });
  return ['| variable | default | allowed | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The metrics table: the gateway's own metrics (not the default process_/nodejs_ ones), in registration order. */
export async function metricsTable(): Promise<string> {
  const app = await buildApp({ config: configWith({ logLevel: 'silent' }), logger: false });
  try {
    await app.ready();
    const rows = app.metrics
      .getMetricsAsArray()
      .filter((metric) => metric.name.startsWith('sse_gateway_'))
      .map((metric) => {
        // prom-client's metric objects carry these; its typings omit them.
        const { type, help, labelNames } = metric as unknown as { type: string; help: string; labelNames: string[] };
        const name = labelNames.length === 0 ? metric.name : `${metric.name}{${labelNames.join(',')}}`;
        return `| ${code(name)} | ${type} | ${cell(help)} |`;
      });
    return ['| metric | type | what |', '| --- | --- | --- |', ...rows].join('\n');
  } finally {
    await app.close();
  }
}

/** One field of a value schema as the README shows it: `name` type (constraints), `?` when optional. */
function describeField(name: string, schema: Record<string, unknown>, required: boolean): string {
  const constraints: string[] = [];
  if (typeof schema.pattern === 'string') constraints.push(code(schema.pattern));
  if (schema.minLength !== undefined || schema.maxLength !== undefined) constraints.push(`${String(schema.minLength ?? 0)}–${String(schema.maxLength ?? '∞')} chars`);
  if (schema.exclusiveMinimum !== undefined) constraints.push(`> ${String(schema.exclusiveMinimum)}`);
  if (schema.minimum !== undefined) constraints.push(`≥ ${String(schema.minimum)}`);
  if (schema.maximum !== undefined) constraints.push(`≤ ${String(schema.maximum)}`);
  if (Array.isArray(schema.enum)) constraints.push(`one of ${schema.enum.map((value) => JSON.stringify(value)).join(', ')}`);
  const type = typeof schema.type === 'string' ? schema.type : 'any';
  return `${code(name)}${required ? '' : '?'} ${type}${constraints.length > 0 ? ` (${constraints.join(', ')})` : ''}`;
}

/** The built-in kinds' record contract: one row per event type, from the declarations. */
export function channelKindsTable(): string {
  const registry = channelRegistry({ chat: 'chat', ticker: 'ticker' });
  const topicSetting: Record<string, string> = { room: '`CHAT_TOPIC` (`chat`)', ticker: '`TICKER_TOPIC` (`ticker`)' };
  const publicSetting: Record<string, string> = { room: '`PUBLIC_ROOMS`', ticker: '`PUBLIC_TICKERS`' };
  const rows = registry.kinds.flatMap((kind) =>
    [...kind.eventTypes.values()].map((type) => {
      const schema = type.schema as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
      const required = new Set(schema.required ?? []);
      const fields = Object.entries(schema.properties ?? {}).map(([name, field]) => describeField(name, field, required.has(name)));
      const forwarded = type.fields.map(code).join(', ');
      return `| ${code(kind.name)} | ${topicSetting[kind.name] ?? code(kind.topic)} | ${code(kind.eventTypeHeader)}: ${code(type.name)} | ${cell(fields.join('; '))} | ${forwarded} | ${kind.conflate ? 'conflated' : 'cut, then resume'} | ${code(kind.claim)}, ${publicSetting[kind.name] ?? ''} |`;
    }),
  );
  return [
    `Key: the channel name (UTF-8, ${code(CHANNEL_NAME_PATTERN)}). Value: a JSON object valid against the event type's schema; extra fields are allowed and never forwarded.`,
    '',
    '| kind | topic (setting, default) | header: event type | value fields (`?` optional) | forwarded to browsers (with the channel and `ts`) | slow clients | read claim, public channels |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** `readme` with the text between each pair of markers replaced by its generated table. */
export async function renderReadme(readme: string): Promise<string> {
  const tables: Record<string, string> = {
    'configuration-table': configurationTable(),
    'metrics-table': await metricsTable(),
    'channel-kinds-table': channelKindsTable(),
  };
  let result = readme;
  for (const [name, table] of Object.entries(tables)) {
    const start = `<!-- ${name}:start (generated by npm run docs:tables from the code: edit the code instead) -->`;
    const end = `<!-- ${name}:end -->`;
    const pattern = new RegExp(`<!-- ${name}:start[^>]*-->[\\s\\S]*?${end.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
    if (!pattern.test(result)) throw new Error(`README.md lacks the ${name} markers`);
    result = result.replace(pattern, () => `${start}\n${table}\n${end}`);
  }
  return result;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const current = await readFile(README, 'utf8');
  const generated = await renderReadme(current);
  if (process.argv.includes('--check')) {
    if (generated !== current) {
      process.stderr.write('README.md tables differ from the code: run `npm run docs:tables`\n');
      process.exit(1);
    }
  } else if (generated !== current) {
    await writeFile(README, generated);
    process.stdout.write('README.md tables rewritten\n');
  } else {
    process.stdout.write('README.md tables already up to date\n');
  }
}
