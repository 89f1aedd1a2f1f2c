import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { EVENT_TYPE_NAME_PATTERN, KIND_NAME_PATTERN, type ChannelKindDeclaration } from './kind.ts';

/**
 * `CHANNELS_FILE`: the channel kinds an operator declares, as JSON (README, "Channel kinds"):
 *
 *     { "kinds": [ { "name": "orders", "topic": "orders", "eventTypes": { "created": { "schema": {…} } } } ] }
 *
 * Checked at startup against FILE_SCHEMA (every field's type and range), then by compileKind
 * (schemas compile, names agree). Any problem stops the start with a message naming the kind and
 * the field: a gateway that silently ignored a declaration would stream nothing for it.
 */

const TOPIC_NAME_PATTERN = '^[A-Za-z0-9._-]{1,249}$';
const CHANNEL_PATTERN_PATTERN = '^[A-Za-z0-9_.-]{0,64}\\*?$';

const KIND_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'topic', 'eventTypes'],
  properties: {
    name: { type: 'string', pattern: KIND_NAME_PATTERN },
    topic: { type: 'string', pattern: TOPIC_NAME_PATTERN },
    description: { type: 'string', maxLength: 500 },
    eventTypes: {
      type: 'object',
      minProperties: 1,
      maxProperties: 100,
      propertyNames: { pattern: EVENT_TYPE_NAME_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['schema'],
        properties: {
          schema: { type: 'object' },
          fields: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 64 }, maxItems: 100, uniqueItems: true },
          description: { type: 'string', maxLength: 500 },
        },
      },
    },
    eventTypeHeader: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    defaultEventType: { type: 'string', pattern: EVENT_TYPE_NAME_PATTERN },
    publish: { type: 'array', items: { type: 'string', pattern: EVENT_TYPE_NAME_PATTERN }, uniqueItems: true },
    slowClients: { enum: ['cut', 'conflate'] },
    historyMaxEvents: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    access: {
      type: 'object',
      additionalProperties: false,
      properties: {
        public: { type: 'array', items: { type: 'string', pattern: CHANNEL_PATTERN_PATTERN, minLength: 1 }, maxItems: 1000 },
        claim: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' },
      },
    },
    partitioning: { enum: ['murmur2', 'any'] },
    presence: { type: 'boolean' },
  },
} as const;

const FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['kinds'],
  properties: { kinds: { type: 'array', items: KIND_SCHEMA, maxItems: 100 } },
} as const;

const validateFile = new Ajv({ allErrors: false, strict: false }).compile(FILE_SCHEMA);

/** Where an Ajv error points, as the kind and the field: `kind "orders": eventTypes.created.schema`. */
function describe(error: ErrorObject, data: { kinds?: Array<{ name?: unknown }> }): string {
  const parts = error.instancePath.split('/').slice(1);
  if (parts[0] !== 'kinds' || parts[1] === undefined) return `${error.instancePath || 'the file'} ${error.message ?? 'is invalid'}`;
  const index = Number(parts[1]);
  const name = data.kinds?.[index]?.name;
  const kind = typeof name === 'string' ? `channel kind "${name}"` : `kinds[${index}]`;
  let field = parts.slice(2).join('.');
  if (error.keyword === 'additionalProperties') field = `${field ? `${field}.` : ''}${String(error.params.additionalProperty)}`;
  if (error.keyword === 'required') field = `${field ? `${field}.` : ''}${String(error.params.missingProperty)}`;
  const problem = error.keyword === 'additionalProperties' ? 'is not a field of a kind declaration' : error.keyword === 'required' ? 'is required' : (error.message ?? 'is invalid');
  return `${kind}: ${field || 'the declaration'} ${problem}`;
}

/**
 * The declarations of `path`. Throws an Error whose message names the file, the kind and the
 * field (unreadable file, not JSON, a field of the wrong type or range, an unknown field).
 */
export function readChannelsFile(path: string): ChannelKindDeclaration[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not JSON: ${(error as Error).message}`);
  }
  if (!validateFile(data)) {
    const [first] = validateFile.errors ?? [];
    throw new Error(`${path}: ${first === undefined ? 'invalid' : describe(first, data as { kinds?: Array<{ name?: unknown }> })}`);
  }
  return (data as unknown as { kinds: ChannelKindDeclaration[] }).kinds;
}
