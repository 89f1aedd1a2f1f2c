import fp from 'fastify-plugin';
import type { FastifySchemaValidationError, FastifyServerOptions } from 'fastify';
import { AjvCompiler } from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

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
 * One pool of Ajv instances for the whole process, not one per app: the pool keeps one Ajv per
 * set of options and shared schemas (as Fastify's own does per app), and Ajv keeps what it
 * compiled per schema object, so an app built again in the same process (the tests build
 * hundreds) reuses the validators of the routes' schemas instead of compiling them again.
 */
const processValidatorPool: ValidatorPool = AjvCompiler();

/**
 * Fastify's validator factory (`schemaController.compilersFactory.buildValidator`), choosing
 * Ajv options by the part of the request: bodies strictly (JSON_BODY_AJV_OPTIONS), query
 * strings, parameters and headers with Fastify's defaults, except that no part has unknown
 * properties removed silently: a schema with `additionalProperties: false` refuses them (400).
 * Both Ajv instances come from @fastify/ajv-compiler, Fastify's own compiler, so formats,
 * shared schemas (`$id`) and the server's `ajv.customOptions` apply as usual.
 */
export function validatorFactory(): BuildValidator {
  const pool = processValidatorPool;
  return ((externalSchemas: unknown, ajvOptions: { customOptions?: Record<string, unknown>; plugins?: unknown[] } = {}) => {
    const base = { ...ajvOptions, customOptions: { ...ajvOptions.customOptions, removeAdditional: false } };
    const strict = { ...ajvOptions, customOptions: { ...ajvOptions.customOptions, ...JSON_BODY_AJV_OPTIONS } };
    // The pool's own typing admits any options object; the casts only restate Fastify's.
    const forText = (pool as (schemas: unknown, options: unknown) => (route: { httpPart?: string }) => unknown)(externalSchemas, base);
    const forBody = (pool as (schemas: unknown, options: unknown) => (route: { httpPart?: string }) => unknown)(externalSchemas, strict);
    return (route: { httpPart?: string }) => (route.httpPart === 'body' ? forBody(route) : forText(route));
  }) as unknown as BuildValidator;
}

/**
 * Response serializers compiled by fast-json-stringify (Fastify's own serializer compiler), kept
 * for the whole process per set of serializer options and shared schemas, then per schema
 * object: an app built again in the same process reuses the serializer of a response schema it
 * has already seen. A WeakMap, so schemas built per app (a declared kind's) are not held once
 * their app is gone. Measured on test/embedded.test.ts (hundreds of apps in one process):
 * 64 CPU-s with schemas compiled per app, 55 with validators shared, 47 with serializers too.
 */
const processSerializers = new Map<string, WeakMap<object, Serializer>>();

/** Fastify's serializer factory (`schemaController.compilersFactory.buildSerializer`): fast-json-stringify, compiled once per schema per process (see processSerializers). */
export function serializerFactory(): BuildSerializer {
  const select = SerializerSelector();
  return ((externalSchemas: unknown, options: Parameters<ReturnType<typeof SerializerSelector>>[1]) => {
    const compile = select(externalSchemas, options);
    const key = JSON.stringify(externalSchemas ?? {}) + JSON.stringify(options ?? {});
    let bySchema = processSerializers.get(key);
    if (bySchema === undefined) processSerializers.set(key, (bySchema = new WeakMap()));
    const cache = bySchema;
    return (route: Parameters<ReturnType<typeof select>>[0]) => {
      const schema = route.schema;
      if (typeof schema !== 'object' || schema === null) return compile(route);
      let serializer = cache.get(schema);
      if (serializer === undefined) cache.set(schema, (serializer = compile(route)));
      return serializer;
    };
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
 * What request bodies the gateway takes: JSON only. Fastify also parses `text/plain` by
 * default, which would reach the schema as a string and be answered "body must be object"
 * (400); without that parser a text body gets 415 Unsupported Media Type, which says what is
 * wrong.
 */
export default fp(
  async (app) => {
    app.removeContentTypeParser('text/plain');
  },
  { name: 'validation', fastify: '5.x' },
);
