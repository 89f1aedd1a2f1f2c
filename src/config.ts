import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { readChannelsFile } from './channels/channels-file.ts';
import { builtInTopics, channelRegistry } from './channels/contract.ts';
import { ChannelKindError, type ChannelKindDeclaration } from './channels/kind.ts';
import { parsePartitionSet, parseShardPeers, type ShardPeer } from './bus/shards.ts';

/**
 * Every setting the gateway reads from its environment, in one place. Each reading function
 * (`integer`, `text`, `bool`, …) records the variable's name, default and allowed values in a
 * registry; with SETTING_DESCRIPTIONS below, that registry writes the README's configuration
 * table (`npm run docs:tables`) and tells a mistyped variable from an unrelated one.
 * `loadConfig` refuses to start on a value it cannot use, or on settings that contradict each
 * other, naming the variables.
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  port: number;
  host: string;
  /**
   * Connections the kernel may hold accepted-but-not-yet-taken for the listen socket (`listen(2)`'s
   * backlog), clipped by the kernel to `net.core.somaxconn`. A reconnect storm (a replica died and
   * its clients all come back at once) overflows a short queue, and each dropped SYN costs its
   * client a retransmit timeout of 1 s, then 2, 4…
   */
  listenBacklog: number;
  logLevel: LogLevel;
  /** null: run on the embedded in-memory bus. */
  kafkaBrokers: string[] | null;
  kafkaClientId: string;
  consumerGroupPrefix: string;
  /** Unique per process: names this replica's own consumer group. */
  instanceId: string;
  chatTopic: string;
  tickerTopic: string;
  /**
   * The channel kinds declared in CHANNELS_FILE (besides the built-in rooms and tickers), already
   * checked: their registry builds (src/channels/contract.ts `channelRegistry`). Empty without a file.
   */
  channelKinds: ChannelKindDeclaration[];
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
  /** Seals SSE ids (resume cursors); replicas behind one load balancer must share it. */
  cursorSecret: string;
  /**
   * `configured`: CURSOR_SECRET. `per-process`: none was set (embedded bus only), so ids are
   * sealed with a key made at startup and stop resuming when the process restarts.
   */
  cursorSecretSource: 'configured' | 'per-process';
  historyMaxEventsPerChannel: number;
  historyMaxAgeMs: number;
  /** A published message id repeated in its room within this many ms is dropped (0 = off); at most `historyMaxAgeMs`. */
  dedupWindowMs: number;
  historyMaxTotalEvents: number;
  /**
   * Bytes the resume history holds in all (HISTORY_MAX_TOTAL_BYTES), beside `historyMaxTotalEvents`:
   * each event counted with its text, its body and frame Buffers and ~1 KB of objects
   * (`eventBytes` in src/hub/recent-events.ts); past it the least recently active channels'
   * oldest events go first, and resumes from them read Kafka. Default 128 MiB (134,217,728 bytes):
   * events of the largest size (a 2000-character message of control characters, ~37 KB each as
   * counted) fill it at ~3,600, and a replica full of them measured ~265 MB RSS once settled
   * (~340 MB while they were being published at the per-IP limit from 10 addresses), where the
   * count bound alone let 200,000 of them take ~7 GB; typical chat messages (~1.6-2 KB each as
   * counted) still fill ~70,000-80,000 events, many minutes of a busy replica.
   */
  historyMaxTotalBytes: number;
  /** Most events of one page of a replay read from Kafka; pages follow one another on the same stream. */
  resumeMaxEvents: number;
  /** Most partitions per replica that replays read from Kafka past their first page at once; the others wait, oldest first. */
  replayMaxConcurrent: number;
  /** Most share of the event loop's time (percent) that replays take, all together; the live streams keep the rest. */
  replaySharePercent: number;
  /** Most ticker records read back from Kafka at startup for the chart history (0 = none). */
  tickerBackfillMaxRecords: number;
  /** Most rooms and tickers on one multi-channel stream (400 beyond). */
  maxChannelsPerStream: number;
  /** A replay starting further back than this sends `event: lag`, then `event: live`. */
  lagThresholdMs: number;
  /** A comment line goes to every stream idle this long (one shared timer). */
  heartbeatMs: number;
  /** Live events held for one stream while its replay runs; beyond, they are dropped and replayed after it. */
  streamMaxQueuedEvents: number;
  /** Concurrent streams per instance (beyond: 200 with `event: unavailable` and a jittered `retry:`). */
  maxStreams: number;
  /** Concurrent streams per client IP (429 beyond). */
  maxStreamsPerIp: number;
  maxHeaderBytes: number;
  /** How long a client may take to send a whole request (a connection that sends nothing is closed after it too). */
  requestTimeoutMs: number;
  /**
   * An idle keep-alive connection is closed after this (ms). Above the idle timeout of the load
   * balancers and clients that reuse connections to the gateway (AWS ALB 60 s; nginx upstream
   * keepalive 60 s), as Fastify's own default of 72 s is: a server that closes first races the
   * reuse, and a request sent on the closing connection is reset (a 502 at the load balancer,
   * a failed POST whose outcome the client cannot know).
   */
  keepAliveTimeoutMs: number;
  /** On shutdown, streams are ended spread over this window, with jittered `retry:`. */
  drainWindowMs: number;
  /**
   * Which X-Forwarded-For hops to believe (Fastify's `trustProxy`): false = none (the socket's
   * address is the client), a number = that many proxies in front of the gateway, a list = the
   * proxies' own addresses/CIDRs. Never "every hop": a client could name any address.
   */
  trustProxy: TrustProxy;
  /** Tokens, service keys and publish limits; no JWT_SECRET and no JWT_PUBLIC_KEY_FILE = auth off. */
  auth: AuthConfig;
  /** TLS and SASL towards the brokers. */
  kafkaSecurity: KafkaSecurityConfig;
  /**
   * Sharded mode (src/bus/shards.ts): the partitions this replica consumes, the same in every
   * channel topic, ascending; null = every partition (the default).
   */
  shardPartitions: number[] | null;
  /** The other shard groups: a stream request for their partitions is redirected there (307); empty = refused (409). */
  shardPeers: ShardPeer[];
  /** Who is in each room (README, "Presence"). */
  presence: PresenceConfig;
}

/** Presence settings (README, "Presence"). */
export interface PresenceConfig {
  /** ROOM_PRESENCE: whether chat rooms track presence (declared kinds say so in their declaration). */
  rooms: boolean;
  /** The presence topic; null: `<CHAT_TOPIC>.presence` (see `presenceTopic`). */
  topic: string | null;
  /** A replica publishes its changes, and sends its streams deltas, at most once per this (ms). */
  intervalMs: number;
  /** A room with more than this many streams on a replica is crowded: its deltas there go out per `crowdIntervalMs`. */
  crowdStreams: number;
  /** A crowded room's streams get a delta at most once per this (ms); at least `intervalMs`. */
  crowdIntervalMs: number;
  /** Each replica restates every channel it holds this often (ms); statements expire after 3× this. */
  restateMs: number;
  /** A member whose last stream closed stays listed this long (ms); above SSE_RETRY_MS. */
  leaveGraceMs: number;
}

/** The presence topic of a deployment: PRESENCE_TOPIC, else `<CHAT_TOPIC>.presence`. */
export function presenceTopic(config: Pick<Config, 'chatTopic' | 'presence'>): string {
  return config.presence.topic ?? `${config.chatTopic}.presence`;
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
  /** Refuse tokens without an `exp` claim (a token that never expires would stream forever). */
  requireTokenExp: boolean;
  /** An authenticated stream ends after this long (ms; 0 = only at the token's `exp`); the client resumes with a fresh token. */
  maxStreamLifetimeMs: number;
  /** Serve /metrics without a key even when auth or service keys are configured (a private scrape network). */
  metricsPublic: boolean;
}

export type KafkaSaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

export interface KafkaSecurityConfig {
  /** null: plaintext. Files are read once at startup. */
  ssl: { caFile: string | null; certFile: string | null; keyFile: string | null; rejectUnauthorized: boolean } | null;
  sasl: { mechanism: KafkaSaslMechanism; username: string; password: string } | null;
  /** Exit non-zero at startup when Kafka refuses the credentials or TLS, instead of retrying forever. */
  failFast: boolean;
}

/** See `Config.trustProxy`. */
export type TrustProxy = false | number | string[];

export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`invalid configuration: ${variable} ${detail}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** One environment variable as the reading functions know it: the README table's row. */
export interface SettingSpec {
  name: string;
  /** The default as the README shows it ("unset" when there is none). */
  default: string;
  /** The values accepted, as the README shows them ("" when any text goes). */
  allowed: string;
}

/** Filled as `loadConfig` reads: every variable it knows, in reading order. */
const SETTINGS = new Map<string, SettingSpec>();
let settingsComplete = false;

/** Records a variable once; the first, most specific, description wins. */
function declare(name: string, fallback: string, allowed: string): void {
  if (!SETTINGS.has(name)) SETTINGS.set(name, { name, default: fallback, allowed });
}

/**
 * Replays' share of the event loop by default. Ten deep replays at once beside 1,000 live streams
 * (bench deep-resume, docs/BENCHMARKS.md "A quiet machine"): the live p99 went from a
 * median 2.18× to 1.68× of the undisturbed run, one client's 20,000-event gap still took
 * 1.1–2.6 s, and the ten replays together took 6–11 s instead of 4–7 s. 20 % was no better for
 * live and slowed a single replay to 2–3 s.
 */
const DEFAULT_REPLAY_SHARE_PERCENT = 30;
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$/;

function read(env: Env, name: string): string | undefined {
  declare(name, 'unset', '');
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  declare(name, String(fallback), `${min}–${max}`);
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function text(env: Env, name: string, fallback: string, pattern?: RegExp): string {
  declare(name, fallback, pattern?.source ?? '');
  const value = read(env, name) ?? fallback;
  if (pattern && !pattern.test(value)) throw new ConfigError(name, `has an invalid value "${value}"`);
  return value;
}

function list(env: Env, name: string): string[] | undefined {
  declare(name, 'unset', 'comma-separated list');
  const raw = read(env, name);
  if (raw === undefined) return undefined;
  return raw.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/** CHANNELS_FILE's declarations (src/channels/channels-file.ts), or none. */
function channelKinds(env: Env): ChannelKindDeclaration[] {
  declare('CHANNELS_FILE', 'unset', 'path of a JSON file');
  const path = read(env, 'CHANNELS_FILE');
  if (path === undefined) return [];
  try {
    return readChannelsFile(path);
  } catch (error) {
    throw new ConfigError('CHANNELS_FILE', (error as Error).message);
  }
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
  declare('LOG_LEVEL', 'info', LOG_LEVELS.join(' '));
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
  declare(name, String(fallback), 'true false (also 1 0, yes no, on off)');
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
    requireTokenExp: bool(env, 'REQUIRE_TOKEN_EXP', true),
    maxStreamLifetimeMs: integer(env, 'MAX_STREAM_LIFETIME_MS', 3_600_000, 0, 604_800_000),
    metricsPublic: bool(env, 'METRICS_PUBLIC', false),
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
  const rejectUnauthorized = bool(env, 'KAFKA_SSL_REJECT_UNAUTHORIZED', true);
  if (!sslOn) {
    // KAFKA_SSL=false beside TLS files or options: one of them is a mistake, and guessing which is not ours.
    const tlsOnly = ['KAFKA_SSL_CA_FILE', 'KAFKA_SSL_CERT_FILE', 'KAFKA_SSL_KEY_FILE', 'KAFKA_SSL_REJECT_UNAUTHORIZED'].find((name) => read(env, name) !== undefined);
    if (tlsOnly !== undefined) throw new ConfigError(tlsOnly, 'is set but KAFKA_SSL is false: remove one of them');
  }
  const mechanism = read(env, 'KAFKA_SASL_MECHANISM')?.toLowerCase();
  const username = read(env, 'KAFKA_SASL_USERNAME');
  declare('KAFKA_SASL_PASSWORD', 'unset', '');
  // Read untrimmed: a password may begin or end with a space.
  const password = env.KAFKA_SASL_PASSWORD;
  let sasl: KafkaSecurityConfig['sasl'] = null;
  if (mechanism !== undefined) {
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new ConfigError('KAFKA_SASL_MECHANISM', `must be plain, scram-sha-256 or scram-sha-512, got "${mechanism}"`);
    }
    if (username === undefined) throw new ConfigError('KAFKA_SASL_USERNAME', 'is required with KAFKA_SASL_MECHANISM');
    if (password === undefined || password === '') throw new ConfigError('KAFKA_SASL_PASSWORD', 'is required with KAFKA_SASL_MECHANISM');
    sasl = { mechanism, username, password };
  } else if (username !== undefined || (password !== undefined && password !== '')) {
    // Credentials that would never be sent: the broker's refusal would not say why.
    throw new ConfigError(username !== undefined ? 'KAFKA_SASL_USERNAME' : 'KAFKA_SASL_PASSWORD', 'is set but KAFKA_SASL_MECHANISM is not: set the mechanism or remove the credentials');
  }
  return {
    ssl: sslOn ? { caFile, certFile, keyFile, rejectUnauthorized } : null,
    sasl,
    failFast: bool(env, 'KAFKA_FAIL_FAST', false),
  };
}

/**
 * Without CURSOR_SECRET the embedded bus (one process, nothing persisted) seals ids with a key
 * made up at startup: ids then die with the process, exactly like the events they point at. On
 * Kafka there is no such default: replicas must share one secret, and a public constant would let
 * anyone forge ids.
 */
const PER_PROCESS_CURSOR_SECRET = randomBytes(32).toString('base64url');

/** proxy-addr's names for address ranges (Fastify's `trustProxy` list accepts them). */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true;
  const [address = '', prefix, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (prefix === undefined) return true;
  // A range wider than /8 is not "our proxies": 0.0.0.0/0 (or two /1 halves) would trust every
  // client's own X-Forwarded-For, which `true` is refused for (and proxy-addr throws on /0).
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128) && Number(prefix) >= 8;
}

/**
 * TRUST_PROXY: `false` (default), a hop count (`1` behind one load balancer), or the proxies'
 * addresses/CIDRs (`10.0.0.0/8,127.0.0.1`). `true` is refused: it believed every hop of
 * X-Forwarded-For, so a client sending its own header chose its address (issue 14).
 */
function trustProxy(env: Env): TrustProxy {
  declare('TRUST_PROXY', 'false', 'false, a hop count, or proxy addresses/CIDRs');
  const raw = read(env, 'TRUST_PROXY');
  if (raw === undefined) return false;
  const lower = raw.toLowerCase();
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  if (['true', 'yes', 'on'].includes(lower)) {
    throw new ConfigError(
      'TRUST_PROXY',
      `"${raw}" would trust every X-Forwarded-For hop, so any client could pick its own address: set the number of proxies in front of the gateway (e.g. TRUST_PROXY=1 behind one load balancer) or their addresses/CIDRs (e.g. TRUST_PROXY=10.0.0.0/8)`,
    );
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 10) throw new ConfigError('TRUST_PROXY', `must be a hop count between 0 and 10, got ${hops}`);
    return hops;
  }
  const entries = raw.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const bad = entries.find((entry) => !isProxyAddress(entry));
  if (bad !== undefined) {
    throw new ConfigError('TRUST_PROXY', `must be false, a hop count, or a list of proxy addresses/CIDRs; "${bad}" is none of these`);
  }
  return entries;
}

function cursorSecret(env: Env): { cursorSecret: string; cursorSecretSource: 'configured' | 'per-process' } {
  const value = read(env, 'CURSOR_SECRET');
  if (value === undefined) {
    if (read(env, 'KAFKA_BROKERS') !== undefined) {
      throw new ConfigError(
        'CURSOR_SECRET',
        'is required with KAFKA_BROKERS: set the same secret (16+ characters, e.g. `openssl rand -base64 32`) on every replica, so any replica can resume any id and nobody can forge one',
      );
    }
    return { cursorSecret: PER_PROCESS_CURSOR_SECRET, cursorSecretSource: 'per-process' };
  }
  // Never echo a secret in the error.
  if (value.length < 16) throw new ConfigError('CURSOR_SECRET', 'must be at least 16 characters long');
  return { cursorSecret: value, cursorSecretSource: 'configured' };
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Reads and checks every setting.
 *
 * @param env the environment (default `process.env`); values are trimmed, empty = unset.
 * @returns the settings in effect.
 * @throws ConfigError naming the variable whose value cannot be used, or both variables of a
 *   pair that contradict each other (see `refuseContradictions`).
 */
export function loadConfig(env: Env = process.env): Config {
  const config = readConfig(env);
  refuseContradictions(config, env);
  return config;
}

function readConfig(env: Env): Config {
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: text(env, 'HOST', '0.0.0.0', /^[A-Za-z0-9.:-]+$/),
    listenBacklog: integer(env, 'LISTEN_BACKLOG', 4096, 1, 1048576),
    logLevel: logLevel(env),
    kafkaBrokers: brokers(env),
    kafkaClientId: text(env, 'KAFKA_CLIENT_ID', 'kafka-sse-gateway', /^[A-Za-z0-9._-]{1,100}$/),
    consumerGroupPrefix: text(env, 'KAFKA_GROUP_PREFIX', 'kafka-sse-gateway', /^[A-Za-z0-9._-]{1,100}$/),
    instanceId: text(env, 'INSTANCE_ID', defaultInstanceId(), /^[A-Za-z0-9._-]{1,100}$/),
    chatTopic: text(env, 'CHAT_TOPIC', 'chat', TOPIC_NAME),
    tickerTopic: text(env, 'TICKER_TOPIC', 'ticker', TOPIC_NAME),
    channelKinds: channelKinds(env),
    topicPartitions: integer(env, 'TOPIC_PARTITIONS', 6, 1, 10000),
    topicReplicationFactor: integer(env, 'TOPIC_REPLICATION_FACTOR', 1, 1, 100),
    publishTimeoutMs: integer(env, 'PUBLISH_TIMEOUT_MS', 5000, 100, 120000),
    kafkaConsumerStuckMs: integer(env, 'KAFKA_CONSUMER_STUCK_MS', 60000, 1000, 3600000),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 16384, 256, 10485760),
    corsOrigins: corsOrigins(env),
    sseRetryMs: integer(env, 'SSE_RETRY_MS', 3000, 0, 3600000),
    streamMaxBufferedBytes: integer(env, 'STREAM_MAX_BUFFERED_BYTES', 1048576, 1024, 1073741824),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 30000, 100, 600000),
    ...cursorSecret(env),
    historyMaxEventsPerChannel: integer(env, 'HISTORY_MAX_EVENTS', 1000, 1, 1000000),
    historyMaxAgeMs: integer(env, 'HISTORY_MAX_AGE_MS', 600000, 1000, 604800000),
    dedupWindowMs: ((age) => integer(env, 'DEDUP_WINDOW_MS', Math.min(60000, age), 0, age))(integer(env, 'HISTORY_MAX_AGE_MS', 600000, 1000, 604800000)),
    historyMaxTotalEvents: integer(env, 'HISTORY_MAX_TOTAL_EVENTS', 200000, 1, 100000000),
    historyMaxTotalBytes: integer(env, 'HISTORY_MAX_TOTAL_BYTES', 134217728, 1024, 1099511627776),
    resumeMaxEvents: integer(env, 'RESUME_MAX_EVENTS', 500, 1, 1000000),
    replayMaxConcurrent: integer(env, 'REPLAY_MAX_CONCURRENT', 2, 1, 100000),
    replaySharePercent: integer(env, 'REPLAY_SHARE_PERCENT', DEFAULT_REPLAY_SHARE_PERCENT, 1, 100),
    tickerBackfillMaxRecords: integer(env, 'TICKER_BACKFILL_MAX_RECORDS', 200000, 0, 100000000),
    maxChannelsPerStream: integer(env, 'MAX_CHANNELS_PER_STREAM', 20, 1, 1000),
    lagThresholdMs: integer(env, 'LAG_THRESHOLD_MS', 5000, 0, 86400000),
    heartbeatMs: integer(env, 'HEARTBEAT_MS', 15000, 100, 3600000),
    streamMaxQueuedEvents: integer(env, 'STREAM_MAX_QUEUED_EVENTS', 10000, 10, 10000000),
    maxStreams: integer(env, 'MAX_STREAMS', 50000, 1, 10000000),
    maxStreamsPerIp: integer(env, 'MAX_STREAMS_PER_IP', 100, 1, 10000000),
    maxHeaderBytes: integer(env, 'MAX_HEADER_BYTES', 16384, 1024, 1048576),
    requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 10000, 100, 600000),
    keepAliveTimeoutMs: integer(env, 'KEEP_ALIVE_TIMEOUT_MS', 72000, 1000, 600000),
    drainWindowMs: integer(env, 'DRAIN_WINDOW_MS', 10000, 0, 600000),
    trustProxy: trustProxy(env),
    auth: authConfig(env),
    kafkaSecurity: kafkaSecurity(env),
    presence: presenceConfig(env),
    ...shardSettings(env),
  };
}

/** SHARD_PARTITIONS and SHARD_PEERS (sharded mode, src/bus/shards.ts). */
function shardSettings(env: Env): Pick<Config, 'shardPartitions' | 'shardPeers'> {
  declare('SHARD_PARTITIONS', 'unset (every partition)', 'partitions and ranges, e.g. 0-5,9');
  declare('SHARD_PEERS', 'unset', 'partitions=url[;partitions=url…]');
  const rawPartitions = read(env, 'SHARD_PARTITIONS');
  const rawPeers = read(env, 'SHARD_PEERS');
  if (rawPartitions === undefined) {
    if (rawPeers !== undefined) throw new ConfigError('SHARD_PEERS', 'is set but SHARD_PARTITIONS is not: peers only mean something to a replica consuming part of the partitions');
    return { shardPartitions: null, shardPeers: [] };
  }
  let shardPartitions: number[];
  try {
    shardPartitions = parsePartitionSet(rawPartitions);
  } catch (error) {
    throw new ConfigError('SHARD_PARTITIONS', `(${rawPartitions}): ${(error as Error).message}`);
  }
  if (rawPeers === undefined) return { shardPartitions, shardPeers: [] };
  try {
    return { shardPartitions, shardPeers: parseShardPeers(rawPeers, shardPartitions) };
  } catch (error) {
    throw new ConfigError('SHARD_PEERS', `(${rawPeers}): ${(error as Error).message}`);
  }
}

function presenceConfig(env: Env): PresenceConfig {
  const topic = read(env, 'PRESENCE_TOPIC');
  if (topic !== undefined && !TOPIC_NAME.test(topic)) throw new ConfigError('PRESENCE_TOPIC', `has an invalid value "${topic}"`);
  const sseRetryMs = integer(env, 'SSE_RETRY_MS', 3000, 0, 3600000);
  const intervalMs = integer(env, 'PRESENCE_INTERVAL_MS', 1000, 10, 60000);
  const crowdStreams = integer(env, 'PRESENCE_CROWD_STREAMS', 100, 1, 10000000);
  // A default that a longer PRESENCE_INTERVAL_MS alone never contradicts (it must be at least that).
  const crowdIntervalMs = integer(env, 'PRESENCE_CROWD_INTERVAL_MS', Math.max(5000, intervalMs), 10, 3600000);
  const restateMs = integer(env, 'PRESENCE_RESTATE_MS', 10000, 100, 3600000);
  // The grace must outlast the reconnect delay, or every reconnect is a leave and a join.
  const leaveGraceMs = integer(env, 'PRESENCE_LEAVE_GRACE_MS', Math.max(5000, sseRetryMs + 2000), 0, 3600000);
  if (read(env, 'PRESENCE_LEAVE_GRACE_MS') !== undefined && leaveGraceMs <= sseRetryMs) {
    throw new ConfigError('PRESENCE_LEAVE_GRACE_MS', `(${leaveGraceMs}) must be greater than SSE_RETRY_MS (${sseRetryMs}): a client reconnecting would leave and join again`);
  }
  if (restateMs < intervalMs) throw new ConfigError('PRESENCE_RESTATE_MS', `(${restateMs}) must be at least PRESENCE_INTERVAL_MS (${intervalMs})`);
  if (crowdIntervalMs < intervalMs) throw new ConfigError('PRESENCE_CROWD_INTERVAL_MS', `(${crowdIntervalMs}) must be at least PRESENCE_INTERVAL_MS (${intervalMs})`);
  return { rooms: bool(env, 'ROOM_PRESENCE', true), topic: topic ?? null, intervalMs, crowdStreams, crowdIntervalMs, restateMs, leaveGraceMs };
}

/**
 * Pairs of settings that cannot both be meant. Each refusal names both variables; checks of a
 * single value stay with its reading function.
 */
function refuseContradictions(config: Config, env: Env): void {
  const given = (name: string) => read(env, name) !== undefined;
  // Declared kinds must not clash with each other or with the built-ins (names, topics, claims).
  try {
    channelRegistry(builtInTopics(config), { declared: config.channelKinds });
  } catch (error) {
    if (!(error instanceof ChannelKindError)) throw error;
    throw new ConfigError('CHANNELS_FILE', `(${read(env, 'CHANNELS_FILE') ?? ''}): ${error.message}`);
  }
  // Presence statements decoded as channel events, or events as statements, would be skipped as broken.
  const presence = presenceTopic(config);
  if (channelRegistry(builtInTopics(config), { declared: config.channelKinds }).byTopic(presence) !== undefined) {
    throw new ConfigError('PRESENCE_TOPIC', `("${presence}") is the topic of a channel kind: presence needs a topic of its own`);
  }
  // The drain must finish, and a publish in flight get its answer, before the process is ended.
  if (config.shutdownTimeoutMs <= config.drainWindowMs) {
    throw new ConfigError('SHUTDOWN_TIMEOUT_MS', `(${config.shutdownTimeoutMs}) must be greater than DRAIN_WINDOW_MS (${config.drainWindowMs}): shutdown would be cut off while streams are still being ended`);
  }
  if (config.shutdownTimeoutMs <= config.publishTimeoutMs) {
    throw new ConfigError('SHUTDOWN_TIMEOUT_MS', `(${config.shutdownTimeoutMs}) must be greater than PUBLISH_TIMEOUT_MS (${config.publishTimeoutMs}): a publish in flight at shutdown could be cut off before its answer`);
  }
  // Token settings do nothing while auth is off: the operator believes in a protection that is not
  // there. (SERVICE_API_KEYS alone is a deployment of its own: services publish with keys, streams
  // are open; see the README's Security section.)
  const authOn = config.auth.jwtSecret !== null || config.auth.jwtPublicKeyFile !== null;
  for (const name of ['JWT_ISSUER', 'JWT_AUDIENCE', 'REQUIRE_TOKEN_EXP', 'MAX_STREAM_LIFETIME_MS']) {
    if (!authOn && given(name)) {
      throw new ConfigError(name, 'is set but neither JWT_SECRET nor JWT_PUBLIC_KEY_FILE is, so auth is off and it would be ignored: set one of them or remove it');
    }
  }
  // Kafka connection settings without KAFKA_BROKERS: the replica would run on the embedded bus, alone.
  if (config.kafkaBrokers === null) {
    const kafkaOnly = ['KAFKA_SASL_MECHANISM', 'KAFKA_SSL', 'KAFKA_SSL_CA_FILE', 'KAFKA_SSL_CERT_FILE', 'KAFKA_FAIL_FAST', 'SHARD_PARTITIONS'].find(given);
    if (kafkaOnly !== undefined) {
      throw new ConfigError(kafkaOnly, 'is set but KAFKA_BROKERS is not, so the embedded in-memory bus would be used and it ignored: set KAFKA_BROKERS or remove it');
    }
  }
}

/**
 * Every variable the gateway reads, in reading order, with its default and allowed values (the
 * README's configuration table; see SETTING_DESCRIPTIONS for the meaning of each).
 */
export function knownSettings(): SettingSpec[] {
  // Reading the defaults visits every reading function (each declares its variable), even when
  // an earlier load stopped at a bad value part-way.
  if (!settingsComplete) {
    readConfig({});
    settingsComplete = true;
  }
  return [...SETTINGS.values()].map((spec) => ({ ...spec, ...SHOWN_DEFAULTS[spec.name] }));
}

/** Levenshtein distance of at most 1 (one character inserted, removed or replaced). */
function oneEditApart(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  // After the first difference, the rest must match with one character skipped or replaced.
  return a.slice(i + 1) === b.slice(i + 1) || a.slice(i + 1) === b.slice(i) || a.slice(i) === b.slice(i + 1);
}

/**
 * Variables in `env` that the gateway does not read but that are one edit (or only letter case)
 * away from one it does: most likely mistyped, and ignored. For a warning at startup.
 *
 * @returns e.g. `[{ variable: 'MAX_STREAM', meant: 'MAX_STREAMS' }]`, in `env` order.
 */
export function likelyMistypedSettings(env: Env = process.env): Array<{ variable: string; meant: string }> {
  const known = knownSettings().map((spec) => spec.name);
  const found: Array<{ variable: string; meant: string }> = [];
  for (const variable of Object.keys(env)) {
    if (known.includes(variable)) continue;
    const meant = known.find((name) => oneEditApart(variable.toUpperCase(), name));
    if (meant !== undefined) found.push({ variable, meant });
  }
  return found;
}

/** Defaults the README shows for settings whose default is computed or depends on others. */
const SHOWN_DEFAULTS: Record<string, Partial<SettingSpec>> = {
  INSTANCE_ID: { default: '<hostname>-<pid>-<random>' },
  CURSOR_SECRET: { default: 'required with Kafka; per process on the embedded bus', allowed: '16+ characters' },
  CORS_ORIGINS: { default: '*', allowed: 'comma-separated origins, or *' },
  KAFKA_SSL: { default: 'false (true when a KAFKA_SSL_*_FILE is set)' },
  KAFKA_BROKERS: { allowed: 'host:port[,host:port…]' },
  JWT_SECRET: { allowed: '32+ characters' },
  SERVICE_API_KEYS: { allowed: 'service=key[,service=key…], keys 24+ characters' },
  PUBLIC_ROOMS: { allowed: 'comma-separated names or trailing-* patterns' },
  PUBLIC_TICKERS: { allowed: 'comma-separated names or trailing-* patterns' },
  KAFKA_SASL_MECHANISM: { allowed: 'plain scram-sha-256 scram-sha-512' },
  PRESENCE_TOPIC: { default: '<CHAT_TOPIC>.presence', allowed: TOPIC_NAME.source },
  PRESENCE_LEAVE_GRACE_MS: { default: 'max(5000, SSE_RETRY_MS + 2000)' },
  PRESENCE_CROWD_INTERVAL_MS: { default: 'max(5000, PRESENCE_INTERVAL_MS)' },
};

/**
 * What each variable means, for the README's configuration table. A variable read in
 * `loadConfig` without an entry here fails the docs test: add one with every new setting.
 */
export const SETTING_DESCRIPTIONS: Record<string, string> = {
  PORT: 'HTTP port',
  HOST: 'listen address',
  LISTEN_BACKLOG: 'connections the kernel queues for the gateway to accept (`listen(2)` backlog): a reconnect storm overflowing it costs each dropped client a SYN retransmit (1 s, then 2, 4…); the kernel caps it at `net.core.somaxconn` (logged at startup when it does: see [Operations](#operations))',
  LOG_LEVEL: 'log level',
  KAFKA_BROKERS: 'the Kafka brokers; unset = embedded in-memory bus (one instance)',
  KAFKA_CLIENT_ID: 'Kafka client id',
  KAFKA_GROUP_PREFIX: 'the consumer group is `<prefix>-<INSTANCE_ID>`',
  INSTANCE_ID: 'names this replica (must differ between replicas)',
  CHAT_TOPIC: 'chat topic (key = room)',
  TICKER_TOPIC: 'ticker topic (key = symbol)',
  CHANNELS_FILE: 'JSON file declaring more channel kinds, each a Kafka topic streamed at `/streams/<kind>/:channel` (README, "Channel kinds")',
  TOPIC_PARTITIONS: 'partitions for topics the gateway creates when missing',
  TOPIC_REPLICATION_FACTOR: 'replication factor for topics it creates',
  PUBLISH_TIMEOUT_MS: "how long a publish waits for Kafka's acknowledgement before 503",
  BODY_LIMIT_BYTES: 'request body limit (413 beyond)',
  CORS_ORIGINS: 'allowed origins for browsers on other sites',
  SSE_RETRY_MS: 'the `retry:` sent to clients',
  STREAM_MAX_BUFFERED_BYTES: 'a stream whose unsent bytes exceed this is ended (the client reconnects)',
  SHUTDOWN_TIMEOUT_MS: 'on SIGTERM/SIGINT, exit (code 1) if closing takes longer than this (it normally takes at most `DRAIN_WINDOW_MS` + 7 s); must be above `DRAIN_WINDOW_MS` and `PUBLISH_TIMEOUT_MS`',
  CURSOR_SECRET: 'seals event ids (opaque, unforgeable); every replica behind one load balancer must share it; required with `KAFKA_BROKERS`',
  HISTORY_MAX_EVENTS: 'events kept per room or symbol for resumes',
  HISTORY_MAX_AGE_MS: 'how long they are kept; also how far back a fresh replica warms its history',
  DEDUP_WINDOW_MS: 'a repeat of a published message id in its room within this is dropped ([idempotent publishing](#idempotent-publishing)); at most `HISTORY_MAX_AGE_MS`; `0` = off',
  HISTORY_MAX_TOTAL_EVENTS: 'events kept in all (the least recently active channels go first)',
  HISTORY_MAX_TOTAL_BYTES: 'bytes of events kept in all (128 MiB by default), each counted with its text, frame buffers and ~1 KB of overhead; past it the least recently active channels\' oldest events go first (resumes from them read Kafka)',
  REPLAY_MAX_CONCURRENT: 'most partitions per replica that replays read from Kafka past their first page (`RESUME_MAX_EVENTS`) at once (replays of a partition already being read go on with it: one read serves them); the others wait their turn, oldest first, their streams open (with heartbeats); a replay whose client stops reading gives its place up meanwhile',
  REPLAY_SHARE_PERCENT: 'most share of the event loop\'s time that replays (resumes) take, all together, in slices of a few ms: after a slice of t ms the next waits t × (100 − share) / share ms, so live events never queue behind replays for long; `100` = replays take every turn they can',
  RESUME_MAX_EVENTS: 'events per page of a replay read from Kafka (pages follow on the same connection, at the client\'s pace); a page is what a replay holds in memory at a time',
  TICKER_BACKFILL_MAX_RECORDS: 'most ticker records a replica reads back from Kafka at startup for the chart history (the most recent ones); `0` = none',
  MAX_CHANNELS_PER_STREAM: 'most rooms and tickers on one `/events?room=…` stream',
  LAG_THRESHOLD_MS: 'a replay starting further back than this is framed by `lag` and `live` events',
  HEARTBEAT_MS: 'a comment line goes to every stream idle this long (one shared timer)',
  STREAM_MAX_QUEUED_EVENTS: 'live events held for one stream while its resume replay runs; beyond, they are dropped and replayed after it (from history or Kafka)',
  MAX_STREAMS: 'concurrent streams per instance; beyond, a stream request gets 200 with `event: unavailable` and a jittered `retry:` (EventSource gives up for good on a 503), then ends',
  MAX_STREAMS_PER_IP: 'concurrent streams per client IP; beyond: 429 with `Retry-After`',
  MAX_HEADER_BYTES: 'largest request head; beyond: 431',
  REQUEST_TIMEOUT_MS: 'a client must send its whole request (head and body) within this, or gets 408 and is disconnected; a connection that sends nothing is closed after it too; streams themselves never time out',
  KEEP_ALIVE_TIMEOUT_MS: 'an idle keep-alive connection is closed after this; keep it above the idle timeout of whatever reuses connections to the gateway (load balancers: AWS ALB 60 s, nginx 60 s), or a request sent as the gateway closes the connection is reset (a 502 at the load balancer)',
  DRAIN_WINDOW_MS: 'on shutdown, open streams are ended spread over this window, each with a jittered `retry:`',
  TRUST_PROXY: 'which `X-Forwarded-For` hops to believe: the number of your own proxies in front of the gateway (`1` behind one load balancer) or their addresses/CIDRs; `true` (every hop, so a client could name its own address) is refused',
  JWT_SECRET: 'HS256 secret that turns [auth](#security) on',
  JWT_PUBLIC_KEY_FILE: 'a PEM public key (RSA → RS256, EC P-256 → ES256) or a JWKS file; turns auth on (not with `JWT_SECRET`)',
  JWT_ISSUER: 'when set, tokens must carry this `iss` (needs auth on)',
  JWT_AUDIENCE: 'when set, tokens must carry this `aud` (needs auth on)',
  AUTH_COOKIE: 'cookie that may carry the token for streams',
  PUBLIC_ROOMS: 'rooms anyone may stream without a token',
  PUBLIC_TICKERS: 'tickers anyone may stream without a token',
  SERVICE_API_KEYS: 'upstream services publish with `X-API-Key`; operators read `/status` and `/metrics` with it (as `X-API-Key` or `Authorization: Bearer`); once set, publishing always needs a key or a token',
  PUBLISH_RATE_PER_IP: 'publish requests per window per client IP (429 beyond)',
  PUBLISH_RATE_PER_IDENTITY: 'publish requests per window per token subject or service',
  RATE_LIMIT_WINDOW_MS: 'the rate-limit window',
  MAX_STREAMS_PER_IDENTITY: 'open streams one token subject may hold (429 beyond); `0` = no cap',
  REQUIRE_TOKEN_EXP: 'refuse tokens without an `exp` claim (401)',
  MAX_STREAM_LIFETIME_MS: 'an authenticated stream ends (`auth_expired`) after this long, whatever its token\'s `exp`; the client resumes with a fresh token; `0` = only at `exp`',
  METRICS_PUBLIC: '`true` serves `/metrics` without a key even when tokens or service keys are configured',
  KAFKA_SSL_CA_FILE: 'CA bundle for the brokers\' certificates (a private CA)',
  KAFKA_SSL_CERT_FILE: 'client certificate (mutual TLS; with `KAFKA_SSL_KEY_FILE`)',
  KAFKA_SSL_KEY_FILE: 'client key (mutual TLS; with `KAFKA_SSL_CERT_FILE`)',
  KAFKA_SSL: 'TLS to the brokers',
  KAFKA_SSL_REJECT_UNAUTHORIZED: '`false` accepts any broker certificate (testing only)',
  KAFKA_SASL_MECHANISM: 'SASL authentication to the brokers',
  KAFKA_SASL_USERNAME: 'SASL user (required with a mechanism)',
  KAFKA_SASL_PASSWORD: 'SASL password (required with a mechanism)',
  KAFKA_CONSUMER_STUCK_MS: 'a started replica whose consumer has neither rejoined its group nor advanced for this long, while Kafka answers it and holds newer records, is stuck: `/readyz` 503 and a fresh consumer',
  ROOM_PRESENCE: 'whether chat rooms track who is in them ([Presence](#presence)); `false`: no presence route or events for rooms, and no presence topic unless a declared kind turns presence on',
  PRESENCE_TOPIC: 'the compacted topic where replicas share who is in each room ([Presence](#presence)); created when missing',
  PRESENCE_INTERVAL_MS: 'presence changes are published, and `presence` deltas sent to streams, at most once per this per room',
  PRESENCE_CROWD_STREAMS: 'a room with more than this many streams on a replica is crowded: its streams there get `presence` deltas at most once per `PRESENCE_CROWD_INTERVAL_MS` (each delta is a write per stream)',
  PRESENCE_CROWD_INTERVAL_MS: 'a crowded room\'s streams get a `presence` delta (the net change) at most once per this; at least `PRESENCE_INTERVAL_MS`',
  PRESENCE_RESTATE_MS: 'each replica restates who it holds in every room this often; a replica silent for 3× this (killed) has its members leave everyone\'s view',
  PRESENCE_LEAVE_GRACE_MS: 'a member whose last stream closed stays listed this long, so a reconnect is not a leave and a join; must be above `SSE_RETRY_MS`',
  KAFKA_FAIL_FAST: 'exit 1 at startup when Kafka refuses the credentials or the TLS handshake, instead of retrying',
  SHARD_PARTITIONS: '[sharded mode](#sharded-mode): the partitions this replica consumes, the same in every channel topic (its own consumer group still); streams of channels on other partitions are redirected or refused (409); unset = every partition; a partition the topic does not have keeps the replica unready, naming it',
  SHARD_PEERS: 'with `SHARD_PARTITIONS`: the other shard groups\' partitions and base URLs; a stream request for their channels gets `307` there instead of `409`',
};

/** Settings for tests and embedders: the defaults, with some replaced. */
export function configWith(overrides: Partial<Config> = {}, env: Env = {}): Config {
  return { ...loadConfig(env), ...overrides };
}
