import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';

/**
 * Every setting the gateway reads from its environment, in one place: the README's
 * configuration table is written from this list, and `loadConfig` refuses to start on a
 * value it cannot use, naming the variable.
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  port: number;
  host: string;
  logLevel: LogLevel;
  /** null: run on the embedded in-memory bus. */
  kafkaBrokers: string[] | null;
  kafkaClientId: string;
  consumerGroupPrefix: string;
  /** Unique per process: names this replica's own consumer group. */
  instanceId: string;
  chatTopic: string;
  tickerTopic: string;
  topicPartitions: number;
  topicReplicationFactor: number;
  /** How long a publish may wait for the broker's acknowledgement before answering 503. */
  publishTimeoutMs: number;
  bodyLimitBytes: number;
  /** `true` reflects any origin; a list allows only those origins. */
  corsOrigins: true | string[];
  /** Reconnect delay sent to EventSource clients as `retry:`. */
  sseRetryMs: number;
  /** A stream whose unsent bytes exceed this is ended; the client resumes from its last id. */
  streamMaxBufferedBytes: number;
  shutdownTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`invalid configuration: ${variable} ${detail}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$/;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function text(env: Env, name: string, fallback: string, pattern?: RegExp): string {
  const value = read(env, name) ?? fallback;
  if (pattern && !pattern.test(value)) throw new ConfigError(name, `has an invalid value "${value}"`);
  return value;
}

function list(env: Env, name: string): string[] | undefined {
  const raw = read(env, name);
  if (raw === undefined) return undefined;
  return raw.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

function brokers(env: Env): string[] | null {
  const items = list(env, 'KAFKA_BROKERS');
  if (items === undefined) return null;
  if (items.length === 0) throw new ConfigError('KAFKA_BROKERS', 'lists no broker');
  for (const item of items) {
    if (!HOST_PORT.test(item)) throw new ConfigError('KAFKA_BROKERS', `entry "${item}" is not host:port`);
  }
  return items;
}

function logLevel(env: Env): LogLevel {
  const raw = read(env, 'LOG_LEVEL') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${raw}"`);
  }
  return raw as LogLevel;
}

function corsOrigins(env: Env): true | string[] {
  const items = list(env, 'CORS_ORIGINS');
  if (items === undefined || items.includes('*')) return true;
  for (const origin of items) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError('CORS_ORIGINS', `entry "${origin}" is not an origin like https://example.com`);
    }
  }
  return items;
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export function loadConfig(env: Env = process.env): Config {
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: text(env, 'HOST', '0.0.0.0', /^[A-Za-z0-9.:-]+$/),
    logLevel: logLevel(env),
    kafkaBrokers: brokers(env),
    kafkaClientId: text(env, 'KAFKA_CLIENT_ID', 'kafka-sse-gateway', /^[A-Za-z0-9._-]{1,100}$/),
    consumerGroupPrefix: text(env, 'KAFKA_GROUP_PREFIX', 'kafka-sse-gateway', /^[A-Za-z0-9._-]{1,100}$/),
    instanceId: text(env, 'INSTANCE_ID', defaultInstanceId(), /^[A-Za-z0-9._-]{1,100}$/),
    chatTopic: text(env, 'CHAT_TOPIC', 'chat', TOPIC_NAME),
    tickerTopic: text(env, 'TICKER_TOPIC', 'ticker', TOPIC_NAME),
    topicPartitions: integer(env, 'TOPIC_PARTITIONS', 6, 1, 10000),
    topicReplicationFactor: integer(env, 'TOPIC_REPLICATION_FACTOR', 1, 1, 100),
    publishTimeoutMs: integer(env, 'PUBLISH_TIMEOUT_MS', 5000, 100, 120000),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 16384, 256, 10485760),
    corsOrigins: corsOrigins(env),
    sseRetryMs: integer(env, 'SSE_RETRY_MS', 3000, 0, 3600000),
    streamMaxBufferedBytes: integer(env, 'STREAM_MAX_BUFFERED_BYTES', 1048576, 1024, 1073741824),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10000, 100, 600000),
  };
}

/** Settings for tests and embedders: the defaults, with some replaced. */
export function configWith(overrides: Partial<Config> = {}, env: Env = {}): Config {
  return { ...loadConfig(env), ...overrides };
}
