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
  /**
   * Milliseconds a started Kafka consumer may go without joining its group or advancing while
   * Kafka answers this replica and holds records it has not read: past that it is stuck
   * (`/readyz` 503, and it is replaced by a fresh consumer).
   */
  kafkaConsumerStuckMs: number;
  bodyLimitBytes: number;
  /** `true` reflects any origin; a list allows only those origins. */
  corsOrigins: true | string[];
  /** Reconnect delay sent to EventSource clients as `retry:`. */
  sseRetryMs: number;
  /** A stream whose unsent bytes exceed this is ended; the client resumes from its last id. */
  streamMaxBufferedBytes: number;
  shutdownTimeoutMs: number;
  /** Signs SSE ids (resume cursors); replicas behind one load balancer must share it. */
  cursorSecret: string;
  /** True when CURSOR_SECRET was not set and the public development default is in use. */
  cursorSecretIsDefault: boolean;
  historyMaxEventsPerChannel: number;
  historyMaxAgeMs: number;
  historyMaxTotalEvents: number;
  /** Most events one resume replays; the client reconnects for the rest. */
  resumeMaxEvents: number;
  /** Most ticker records read back from Kafka at startup for the chart history (0 = none). */
  tickerBackfillMaxRecords: number;
  /** Most rooms and tickers on one multi-channel stream (400 beyond). */
  maxChannelsPerStream: number;
  /** A replay starting further back than this sends `event: lag`, then `event: live`. */
  lagThresholdMs: number;
  /** A comment line goes to every stream idle this long (one shared timer). */
  heartbeatMs: number;
  /** Frames queued for one stream beyond which it is ended (a chat client resumes). */
  streamMaxQueuedEvents: number;
  /** Concurrent streams per instance (503 with Retry-After beyond). */
  maxStreams: number;
  /** Concurrent streams per client IP (429 beyond). */
  maxStreamsPerIp: number;
  maxHeaderBytes: number;
  /** How long a client may take to send a whole request; idle keep-alive sockets close too. */
  requestTimeoutMs: number;
  /** On shutdown, streams are ended spread over this window, with jittered `retry:`. */
  drainWindowMs: number;
  /** Read the client IP from X-Forwarded-For (behind a load balancer). */
  trustProxy: boolean;
  /** Security settings (issue 6); null secret and key file = auth off. */
  auth: AuthConfig;
  /** TLS and SASL towards the brokers. */
  kafkaSecurity: KafkaSecurityConfig;
}

export interface AuthConfig {
  /** HS256 shared secret (JWT_SECRET). */
  jwtSecret: string | null;
  /** A PEM public key (RS256/ES256) or a JWKS file (JWT_PUBLIC_KEY_FILE). */
  jwtPublicKeyFile: string | null;
  /** Required `iss` / `aud` when set. */
  jwtIssuer: string | null;
  jwtAudience: string | null;
  /** Cookie that may carry the token (EventSource cannot send headers). */
  cookieName: string;
  /** Exact names or trailing-`*` patterns anyone may subscribe to without a token. */
  publicRooms: string[];
  publicTickers: string[];
  /** Upstream services publishing with `X-API-Key`: key → service name. */
  serviceApiKeys: Map<string, string>;
  /** Publish requests per `rateLimitWindowMs`, per client IP and per authenticated identity. */
  publishRatePerIp: number;
  publishRatePerIdentity: number;
  rateLimitWindowMs: number;
  /** Concurrent streams one identity may hold open (0 = no cap). */
  maxStreamsPerIdentity: number;
}

export type KafkaSaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

export interface KafkaSecurityConfig {
  /** null: plaintext. Files are read once at startup. */
  ssl: { caFile: string | null; certFile: string | null; keyFile: string | null; rejectUnauthorized: boolean } | null;
  sasl: { mechanism: KafkaSaslMechanism; username: string; password: string } | null;
  /** Exit non-zero at startup when Kafka refuses the credentials or TLS, instead of retrying forever. */
  failFast: boolean;
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

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

const NAME_PATTERN = /^[A-Za-z0-9_.-]{0,64}\*?$/;

function patterns(env: Env, name: string): string[] {
  const items = list(env, name) ?? [];
  for (const item of items) {
    if (item === '' || !NAME_PATTERN.test(item)) {
      throw new ConfigError(name, `entry "${item}" is not a name or a trailing-* pattern like team-*`);
    }
  }
  return items;
}

function serviceApiKeys(env: Env): Map<string, string> {
  const keys = new Map<string, string>();
  for (const item of list(env, 'SERVICE_API_KEYS') ?? []) {
    const separator = item.indexOf('=');
    const service = item.slice(0, separator);
    const key = item.slice(separator + 1);
    // The key itself is never echoed: config errors end up in logs.
    if (separator < 1 || !/^[A-Za-z0-9_.-]{1,64}$/.test(service)) {
      throw new ConfigError('SERVICE_API_KEYS', 'entries must be service-name=key');
    }
    if (key.length < 24) throw new ConfigError('SERVICE_API_KEYS', `the key of "${service}" is shorter than 24 characters`);
    keys.set(key, service);
  }
  return keys;
}

function authConfig(env: Env): AuthConfig {
  const jwtSecret = read(env, 'JWT_SECRET') ?? null;
  if (jwtSecret !== null && jwtSecret.length < 32) {
    throw new ConfigError('JWT_SECRET', 'must be at least 32 characters (HS256 needs 256 bits)');
  }
  const jwtPublicKeyFile = read(env, 'JWT_PUBLIC_KEY_FILE') ?? null;
  if (jwtSecret !== null && jwtPublicKeyFile !== null) {
    throw new ConfigError('JWT_PUBLIC_KEY_FILE', 'cannot be combined with JWT_SECRET: choose one way to verify tokens');
  }
  return {
    jwtSecret,
    jwtPublicKeyFile,
    jwtIssuer: read(env, 'JWT_ISSUER') ?? null,
    jwtAudience: read(env, 'JWT_AUDIENCE') ?? null,
    cookieName: text(env, 'AUTH_COOKIE', 'token', /^[A-Za-z0-9_.-]{1,64}$/),
    publicRooms: patterns(env, 'PUBLIC_ROOMS'),
    publicTickers: patterns(env, 'PUBLIC_TICKERS'),
    serviceApiKeys: serviceApiKeys(env),
    publishRatePerIp: integer(env, 'PUBLISH_RATE_PER_IP', 600, 1, 1_000_000),
    publishRatePerIdentity: integer(env, 'PUBLISH_RATE_PER_IDENTITY', 120, 1, 1_000_000),
    rateLimitWindowMs: integer(env, 'RATE_LIMIT_WINDOW_MS', 60000, 1000, 3_600_000),
    maxStreamsPerIdentity: integer(env, 'MAX_STREAMS_PER_IDENTITY', 20, 0, 100_000),
  };
}

function kafkaSecurity(env: Env): KafkaSecurityConfig {
  const caFile = read(env, 'KAFKA_SSL_CA_FILE') ?? null;
  const certFile = read(env, 'KAFKA_SSL_CERT_FILE') ?? null;
  const keyFile = read(env, 'KAFKA_SSL_KEY_FILE') ?? null;
  if ((certFile === null) !== (keyFile === null)) {
    throw new ConfigError(certFile === null ? 'KAFKA_SSL_CERT_FILE' : 'KAFKA_SSL_KEY_FILE', 'must be set together with its pair (client certificate and key)');
  }
  const sslOn = bool(env, 'KAFKA_SSL', caFile !== null || certFile !== null);
  const mechanism = read(env, 'KAFKA_SASL_MECHANISM')?.toLowerCase();
  let sasl: KafkaSecurityConfig['sasl'] = null;
  if (mechanism !== undefined) {
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new ConfigError('KAFKA_SASL_MECHANISM', `must be plain, scram-sha-256 or scram-sha-512, got "${mechanism}"`);
    }
    const username = read(env, 'KAFKA_SASL_USERNAME');
    const password = env.KAFKA_SASL_PASSWORD;
    if (username === undefined) throw new ConfigError('KAFKA_SASL_USERNAME', 'is required with KAFKA_SASL_MECHANISM');
    if (password === undefined || password === '') throw new ConfigError('KAFKA_SASL_PASSWORD', 'is required with KAFKA_SASL_MECHANISM');
    sasl = { mechanism, username, password };
  }
  return {
    ssl: sslOn ? { caFile, certFile, keyFile, rejectUnauthorized: bool(env, 'KAFKA_SSL_REJECT_UNAUTHORIZED', true) } : null,
    sasl,
    failFast: bool(env, 'KAFKA_FAIL_FAST', false),
  };
}

/** Public on purpose: fine for one instance; replicas must share a CURSOR_SECRET of their own. */
const DEVELOPMENT_CURSOR_SECRET = 'kafka-sse-gateway-development-cursor-secret';

function cursorSecret(env: Env): string {
  const value = read(env, 'CURSOR_SECRET');
  if (value === undefined) return DEVELOPMENT_CURSOR_SECRET;
  // Never echo a secret in the error.
  if (value.length < 16) throw new ConfigError('CURSOR_SECRET', 'must be at least 16 characters long');
  return value;
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
    kafkaConsumerStuckMs: integer(env, 'KAFKA_CONSUMER_STUCK_MS', 60000, 1000, 3600000),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 16384, 256, 10485760),
    corsOrigins: corsOrigins(env),
    sseRetryMs: integer(env, 'SSE_RETRY_MS', 3000, 0, 3600000),
    streamMaxBufferedBytes: integer(env, 'STREAM_MAX_BUFFERED_BYTES', 1048576, 1024, 1073741824),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 30000, 100, 600000),
    cursorSecret: cursorSecret(env),
    cursorSecretIsDefault: read(env, 'CURSOR_SECRET') === undefined,
    historyMaxEventsPerChannel: integer(env, 'HISTORY_MAX_EVENTS', 1000, 1, 1000000),
    historyMaxAgeMs: integer(env, 'HISTORY_MAX_AGE_MS', 600000, 1000, 604800000),
    historyMaxTotalEvents: integer(env, 'HISTORY_MAX_TOTAL_EVENTS', 200000, 1, 100000000),
    resumeMaxEvents: integer(env, 'RESUME_MAX_EVENTS', 10000, 1, 1000000),
    tickerBackfillMaxRecords: integer(env, 'TICKER_BACKFILL_MAX_RECORDS', 200000, 0, 100000000),
    maxChannelsPerStream: integer(env, 'MAX_CHANNELS_PER_STREAM', 20, 1, 1000),
    lagThresholdMs: integer(env, 'LAG_THRESHOLD_MS', 5000, 0, 86400000),
    heartbeatMs: integer(env, 'HEARTBEAT_MS', 15000, 100, 3600000),
    streamMaxQueuedEvents: integer(env, 'STREAM_MAX_QUEUED_EVENTS', 10000, 10, 10000000),
    maxStreams: integer(env, 'MAX_STREAMS', 50000, 1, 10000000),
    maxStreamsPerIp: integer(env, 'MAX_STREAMS_PER_IP', 100, 1, 10000000),
    maxHeaderBytes: integer(env, 'MAX_HEADER_BYTES', 16384, 1024, 1048576),
    requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 10000, 100, 600000),
    drainWindowMs: integer(env, 'DRAIN_WINDOW_MS', 10000, 0, 600000),
    trustProxy: bool(env, 'TRUST_PROXY', false),
    auth: authConfig(env),
    kafkaSecurity: kafkaSecurity(env),
  };
}

/** Settings for tests and embedders: the defaults, with some replaced. */
export function configWith(overrides: Partial<Config> = {}, env: Env = {}): Config {
  return { ...loadConfig(env), ...overrides };
}
