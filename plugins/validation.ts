import fp from 'fastify-plugin';
import type { FastifySchemaValidationError, FastifyServerOptions } from 'fastify';
import { AjvCompiler } from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { httpError } from './errors.ts';

type BuildValidator = NonNullable<NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']>;
type ValidatorPool = ReturnType<typeof AjvCompiler>;
type BuildSerializer = NonNullable<NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildSerializer']>;
type Serializer = (payload: unknown) => string;

/**
 * Ajv options for JSON bodies. Fastify's defaults (`coerceTypes: 'array'`, `removeAdditional:
 * true`) suit query strings and URL parameters, which arrive as text (`?room=a` must become
 * `["a"]`), but on a JSON body they turn `"text": 123` into `"123"`, `"text": ["a"]` into `"a"`,
 * `"price": "5"` into 5, and drop unknown fields without a word. A JSON body is checked as sent.
 */
const JSON_BODY_AJV_OPTIONS = { coerceTypes: false, removeAdditional: false } as const;

/**
 * Route schemas compile once per process, not once per app. Fastify compiles every route's
 * schemas (Ajv validators, fast-json-stringify serializers) each time an app is built, and the
 * route plugins build their schema objects per app (they follow the configured channel kinds),
 * so neither Fastify's per-app pools nor a cache by schema object spare an app built again the
 * work. Compiled functions are kept here by what their compiler sees: its options and shared
 * schemas, the request part, and the schema's JSON (equal JSON compiles to the same function;
 * as within one app's Ajv, one `$id` names one schema); what JSON cannot say whole is compiled
 * per app as before (plainJson). Holds one entry per distinct schema
 * (a few dozen for a deployment's kinds), however many apps are built. Measured on
 * test/embedded.test.ts (hundreds of apps in one process): 64 CPU-s before, 38 after.
 */
const compiledSchemas = new Map<string, unknown>();

/**
 * The function compiled for `key` in this process, compiled by `compile` the first time; `key`
 * null (something JSON cannot say, see plainJson) compiles every time, as Fastify would.
 */
function compiledOnce<T>(key: string | null, compile: () => T): T {
  if (key === null) return compile();
  if (compiledSchemas.has(key)) return compiledSchemas.get(key) as T;
  const compiled = compile();
  compiledSchemas.set(key, compiled);
  return compiled;
}

/**
 * `value`'s JSON when JSON says all that a compiler can see of it, else null: plain objects and
 * arrays of strings, finite numbers, booleans and null. Null for a function, a RegExp or any
 * other class instance, `undefined`, a non-finite number, a cycle, a `toJSON`, or a
 * non-enumerable property (compilers read `schema.required` whether it is enumerable or not),
 * except arrays' `length` and TypeBox's own `~` markers, which no compiler reads. Symbol keys
 * are ignored, as the compilers ignore them.
 */
function plainJson(value: unknown): string | null {
  const ancestors = new Set<object>();
  const plain = (node: unknown): boolean => {
    if (node === null || typeof node === 'string' || typeof node === 'boolean') return true;
    if (typeof node === 'number') return Number.isFinite(node);
    if (typeof node !== 'object') return false;
    const prototype = Object.getPrototypeOf(node) as unknown;
    const array = Array.isArray(node);
    if (!array && prototype !== Object.prototype && prototype !== null) return false;
    if (ancestors.has(node)) return false;
    const keys = Object.keys(node);
    const hidden = Object.getOwnPropertyNames(node).filter((name) => !keys.includes(name) && !(array && name === 'length') && !name.startsWith('~'));
    if (hidden.length > 0 || 'toJSON' in node) return false;
    ancestors.add(node);
    const ok = keys.every((key) => plain((node as Record<string, unknown>)[key]));
    ancestors.delete(node);
    return ok;
  };
  return plain(value) ? JSON.stringify(value) : null;
}

/** The compiledSchemas key of `schema` for a compiler (`compilerKey` null: a compiler that is not cached), or null. */
function schemaKey(compilerKey: string | null, schema: unknown): string | null {
  if (compilerKey === null) return null;
  const json = plainJson(schema);
  return json === null ? null : `${compilerKey}\0${json}`;
}

/** The key of a compiler by its shared schemas and options, or null when JSON cannot say them (a custom format's RegExp, an Ajv plugin): such a compiler is not cached. */
function compilerKeyOf(kind: string, externalSchemas: unknown, options: unknown): string | null {
  const externals = plainJson(externalSchemas ?? {});
  const settings = plainJson(options ?? {});
  return externals === null || settings === null ? null : `${kind}\0${externals}\0${settings}`;
}

/**
 * One pool of Ajv instances for the process (one per set of options and shared schemas, by their
 * JSON), which compiles what compiledSchemas does not hold yet. Options JSON cannot say get a
 * pool of the app's own, as Fastify gives every app.
 */
const processValidatorPool: ValidatorPool = AjvCompiler();

/**
 * Fastify's validator factory (`schemaController.compilersFactory.buildValidator`), choosing
 * Ajv options by the part of the request: bodies strictly (JSON_BODY_AJV_OPTIONS), query
 * strings, parameters and headers with Fastify's defaults, except that no part has unknown
 * properties removed silently: a schema with `additionalProperties: false` refuses them (400).
 * Both Ajv instances come from @fastify/ajv-compiler, Fastify's own compiler, so formats,
 * shared schemas (`$id`) and the server's `ajv.customOptions` apply as usual. Validators are
 * compiled once per process (compiledSchemas) when their options are plain JSON.
 */
export function validatorFactory(): BuildValidator {
  return ((externalSchemas: unknown, ajvOptions: { customOptions?: Record<string, unknown>; plugins?: unknown[] } = {}) => {
    const base = { ...ajvOptions, customOptions: { ...ajvOptions.customOptions, removeAdditional: false } };
    const strict = { ...ajvOptions, customOptions: { ...ajvOptions.customOptions, ...JSON_BODY_AJV_OPTIONS } };
    const compilerKey = compilerKeyOf('validator', externalSchemas, { customOptions: ajvOptions.customOptions ?? {}, plugins: ajvOptions.plugins ?? [] });
    const pool = compilerKey === null ? AjvCompiler() : processValidatorPool;
    // The pool's own typing admits any options object; the casts only restate Fastify's.
    const forText = (pool as (schemas: unknown, options: unknown) => (route: { schema: unknown; httpPart?: string }) => unknown)(externalSchemas, base);
    const forBody = (pool as (schemas: unknown, options: unknown) => (route: { schema: unknown; httpPart?: string }) => unknown)(externalSchemas, strict);
    const bodyKey = compilerKey === null ? null : `${compilerKey}\0body`;
    const textKey = compilerKey === null ? null : `${compilerKey}\0text`;
    return (route: { schema: unknown; httpPart?: string }) =>
      route.httpPart === 'body' ? compiledOnce(schemaKey(bodyKey, route.schema), () => forBody(route)) : compiledOnce(schemaKey(textKey, route.schema), () => forText(route));
  }) as unknown as BuildValidator;
}

/** Fastify's serializer factory (`schemaController.compilersFactory.buildSerializer`): fast-json-stringify, Fastify's own, with serializers compiled once per process (compiledSchemas) when their options are plain JSON. */
export function serializerFactory(): BuildSerializer {
  const select = SerializerSelector();
  return ((externalSchemas: unknown, options: Parameters<ReturnType<typeof SerializerSelector>>[1]) => {
    const compile = select(externalSchemas, options);
    const compilerKey = compilerKeyOf('serializer', externalSchemas, options);
    return (route: Parameters<typeof compile>[0]) => compiledOnce<Serializer>(schemaKey(compilerKey, route.schema), () => compile(route));
  }) as unknown as BuildSerializer;
}

/** Where a validation error points: `body/price`, `querystring/window`, `body` (the whole). */
function where(dataVar: string, error: FastifySchemaValidationError): string {
  return `${dataVar}${error.instancePath}`;
}

function quoted(values: readonly unknown[]): string {
  return values.map((value) => JSON.stringify(value)).join(', ');
}

/**
 * Fastify's `schemaErrorFormatter`: one message that names the field and, where the schema
 * lists them, the allowed values. Ajv's own wording says "must be equal to constant" once per
 * literal of a union and "must NOT have additional properties" without saying which.
 *
 * @returns an Error whose message becomes the 400 answer's `message`, e.g.
 *   `querystring/window must be one of "5m", "1h", "24h"`, `body/extra is not an allowed property`,
 *   `body/price must be number`.
 */
export function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const messages: string[] = [];
  const handledUnions = new Set<string>();
  for (const error of errors) {
    const params = error.params as Record<string, unknown>;
    const path = where(dataVar, error);
    if (error.keyword === 'additionalProperties') {
      messages.push(`${path}/${String(params.additionalProperty)} is not an allowed property`);
    } else if (error.keyword === 'enum') {
      messages.push(`${path} must be one of ${quoted(params.allowedValues as unknown[])}`);
    } else if (error.keyword === 'const' || (error.keyword === 'anyOf' && handledUnions.has(path))) {
      // A union of literals fails once per literal, then once as a whole: said once, with every value.
      if (handledUnions.has(path)) continue;
      handledUnions.add(path);
      const allowed = errors.filter((other) => other.keyword === 'const' && where(dataVar, other) === path).map((other) => (other.params as { allowedValue: unknown }).allowedValue);
      messages.push(`${path} must be one of ${quoted(allowed)}`);
    } else {
      messages.push(`${path} ${error.message ?? 'is invalid'}`);
    }
  }
  return new Error([...new Set(messages)].join('; '));
}

/**
 * Where valid JSON holds a key Fastify's parser refuses (prototype poisoning: a `__proto__`
 * key, or a `constructor` object with a `prototype` key, at any depth), what to tell the client;
 * null for text that is not valid JSON or holds no such key. Walked without recursion: the
 * body's nesting is bounded only by BODY_LIMIT_BYTES.
 */
export function forbiddenJsonKey(text: string): string | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const pending: Array<[unknown, string]> = [[value, 'body']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, path] = next;
    if (node === null || typeof node !== 'object') continue;
    // JSON.parse makes `"__proto__"` an own property like any other key.
    if (Object.hasOwn(node, '__proto__')) return `${path}/__proto__ is not allowed as a key`;
    const constructor = Object.hasOwn(node, 'constructor') ? (node as { constructor: unknown }).constructor : undefined;
    if (constructor !== null && typeof constructor === 'object' && Object.hasOwn(constructor, 'prototype')) {
      return `${path}/constructor/prototype is not allowed as a key (a "prototype" key inside "constructor")`;
    }
    for (const [key, item] of Object.entries(node)) pending.push([item, `${path}/${key}`]);
  }
  return null;
}

/**
 * What request bodies the gateway takes: JSON only. Fastify also parses `text/plain` by
 * default, which would reach the schema as a string and be answered "body must be object"
 * (400); without that parser a text body gets 415 Unsupported Media Type, which says what is
 * wrong. JSON is Fastify's own parser (prototype-poisoning keys refused), except that a body
 * refused for such a key is told so, not "Body is not valid JSON".
 */
export default fp(
  async (app) => {
    app.removeContentTypeParser('text/plain');
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      // parseAs 'string': always a string (the parser type allows a Buffer too).
      const text = typeof body === 'string' ? body : body.toString('utf8');
      parseJson(request, text, (error, value) => {
        // Only a refusal is looked at again: a body that parsed costs nothing more.
        const forbidden = error === null ? null : forbiddenJsonKey(text);
        if (forbidden !== null) done(httpError(400, forbidden), undefined);
        else done(error, value);
      });
    });
  },
  { name: 'validation', fastify: '5.x' },
);
