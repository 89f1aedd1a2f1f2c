/**
 * The gateway's typed client (`kafka-sse-gateway/client`), for Node 20+ and browsers (through a
 * bundler): it subscribes to rooms and tickers over Server-Sent Events with `fetch`, and
 * behaves like a browser's EventSource where it matters: on a dropped stream it waits the
 * server's `retry:` delay, reconnects and sends the last `id:` it saw as `Last-Event-ID`, so the
 * gateway can resume where it stopped. Beyond EventSource: a token in a header, fetched afresh
 * by `getToken()` before every (re)connection (a stream ended by `auth_expired` resumes with a
 * new token instead of ending for good), typed events, and `for await` iteration.
 *
 *   const stream = subscribe(roomUrl('http://127.0.0.1:3000', 'lobby'), { getToken: () => session.token() });
 *   stream.on('message', (message) => render(message.user, message.text));
 *   // later: stream.close();
 */
import { EventIterator } from 'event-iterator';
import { SseParser, type SseMessage } from './sse-parser.ts';

export interface ChatMessageEvent {
  room: string;
  id: string;
  user: string;
  text: string;
  ts: number;
}
/** A message's new text; `ts` is when it was edited (the edit record's Kafka timestamp). */
export interface ChatEditEvent {
  room: string;
  id: string;
  text: string;
  ts: number;
}
export interface ChatDeleteEvent {
  room: string;
  id: string;
  ts: number;
}
export interface PriceUpdateEvent {
  ticker: string;
  price: number;
  currency: string;
  ts: number;
}
/** The gateway could not resume from the id this client sent: events may have been missed. */
export interface ResetEvent {
  reason: string;
}

/** The built-in kinds' events (rooms and tickers), by their SSE `event:` name. */
export interface BuiltInEvents {
  message: ChatMessageEvent;
  edit: ChatEditEvent;
  delete: ChatDeleteEvent;
  price_update: PriceUpdateEvent;
}

/**
 * The data of an event of a kind declared in CHANNELS_FILE: the channel under the kind's name,
 * the declared `Fields`, and `ts`. E.g. `interface OrderEvents { created: ChannelEvent<'orders', { orderId: string; amount: number }> }`,
 * then `subscribe<OrderEvents>(streamUrl(base, 'orders', 'o-1'))`.
 */
export type ChannelEvent<Kind extends string, Fields extends object> = { [K in Kind]: string } & Fields & { ts: number };

/** The events the gateway adds to every stream, whatever its channels. */
export interface ControlEvents {
  reset: ResetEvent;
  /** The stream is replaying missed events (resume); `live` follows when it has caught up. */
  lag: Record<string, unknown>;
  live: Record<string, unknown>;
  /** The client was too slow and is disconnected; it reconnects and resumes by itself. */
  overflow: { reason: string };
  /**
   * The token's `exp` passed and the gateway ends the stream: the client reconnects, asking
   * `getToken()` for a fresh token, and resumes by id (without `getToken` the old token is
   * refused and the stream closes).
   */
  auth_expired: { reason: string };
  /** The replica cannot take the stream now (starting, draining, full): the client reconnects after `retryMs`. */
  unavailable: { reason: string; retryMs: number };
  /** The stream's position with no channel event (after connecting, after a replay page): the client keeps its id. */
  position: Record<string, never>;
  /** Who is in a room (or a channel of a kind with presence on): a snapshot first, then deltas (README, "Presence"). */
  presence: PresenceEvent;
}

/** A member of a room's presence: `verified: false` marks a self-chosen name (auth off, `?name=`). */
export interface PresenceMember {
  sub: string | null;
  name: string;
  /** When it joined, ms since the epoch (in snapshots). */
  since?: number;
  verified?: false;
}

/**
 * `event: presence`: the channel under its kind's name (`room`); a snapshot (`snapshot: true`,
 * `members`) when the stream opens, then deltas (`joined`, `left`, as set changes); `count`
 * (members) and `anonymous` (unnamed streams) are absolute. Carries no id.
 */
export interface PresenceEvent {
  room?: string;
  snapshot?: true;
  members?: PresenceMember[];
  /** The snapshot lists only the earliest 2,000 members (`count` counts all; the presence route lists all). */
  truncated?: true;
  joined?: PresenceMember[];
  left?: PresenceMember[];
  count: number;
  anonymous: number;
  [kind: string]: unknown;
}

/** Every event of a stream of rooms and tickers. */
export type GatewayEvents = BuiltInEvents & ControlEvents;

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Told of the connection itself, beside the events. */
export interface ConnectionEvents {
  /** Each time a response starts streaming; `resumed` when it was sent a Last-Event-ID. */
  open: { resumed: boolean; lastEventId: string };
  /** A failed attempt or a dropped stream; the client retries unless `willRetry` is false. */
  error: { error: Error; willRetry: boolean; status?: number | undefined };
  state: ConnectionState;
}

type Listeners = Partial<Record<string, Set<(value: never, meta: EventMeta) => void>>>;

/** Where an event came from: its SSE id (the gateway's position for it). */
export interface EventMeta {
  id: string | undefined;
  lastEventId: string;
}

export interface SubscribeOptions {
  /** Resume from this id on the first connection (it is sent as Last-Event-ID). */
  lastEventId?: string;
  /** Reconnection delay until the server sends `retry:`; EventSource's usual default. */
  retryMs?: number;
  /** After this many failed attempts in a row the delay doubles each time, up to `maxRetryMs`. */
  maxRetryMs?: number;
  headers?: Record<string, string>;
  /**
   * Called before each connection and reconnection; its token is sent as `Authorization:
   * Bearer <token>` (undefined: no header). Lets a long-lived page hand over a fresh token when
   * the old one expired. If it throws, the attempt counts as failed and is retried later. A 401
   * answer is retried once more with a new token; a second 401 in a row closes the stream.
   */
  getToken?: () => string | undefined | Promise<string | undefined>;
  fetch?: typeof fetch;
}

/** A stream whose channel events are `E` (default: the built-ins'), plus the control events. */
export interface GatewayStream<E extends object = BuiltInEvents> {
  readonly url: string;
  readonly state: ConnectionState;
  /** The last id received: what a reconnection sends as Last-Event-ID. */
  readonly lastEventId: string;
  /** The reconnection delay in force (the server's `retry:` once it sent one). */
  readonly retryMs: number;
  on<K extends keyof (E & ControlEvents)>(type: K, listener: (data: (E & ControlEvents)[K], meta: EventMeta) => void): () => void;
  on<K extends keyof ConnectionEvents>(type: K, listener: (value: ConnectionEvents[K]) => void): () => void;
  /**
   * The events of `types`, in order, for `for await`; the iteration ends when the stream is
   * closed (or the loop breaks). At most `maxBuffered` events wait for a slow loop: past that
   * the iteration fails with an error instead of holding ever more of them.
   */
  iterate<K extends keyof (E & ControlEvents)>(types: readonly K[], options?: { maxBuffered?: number }): AsyncIterable<StreamEvent<K, E>>;
  close(): void;
}

/** One event as `iterate()` yields it. */
export type StreamEvent<K extends keyof (E & ControlEvents), E extends object = BuiltInEvents> = {
  [T in K]: { type: T; data: (E & ControlEvents)[T]; meta: EventMeta };
}[K];

function path(part: string): string {
  return encodeURIComponent(part);
}

export function roomUrl(baseUrl: string, room: string): string {
  return new URL(`/events/${path(room)}`, baseUrl).href;
}

export function tickerUrl(baseUrl: string, symbol: string): string {
  return new URL(`/tickers/${path(symbol)}/events`, baseUrl).href;
}

/** One channel of any kind, built-in or declared in CHANNELS_FILE (`GET /streams/<kind>/<channel>`). */
export function streamUrl(baseUrl: string, kind: string, channel: string): string {
  return new URL(`/streams/${path(kind)}/${path(channel)}`, baseUrl).href;
}

/**
 * Several channels on one connection (`GET /events?room=…&ticker=…&<kind>=…`): `rooms` and
 * `tickers` for the built-ins, any other key for a declared kind of that name.
 */
export function channelsUrl(baseUrl: string, channels: { rooms?: readonly string[]; tickers?: readonly string[]; [kind: string]: readonly string[] | undefined }): string {
  const url = new URL('/events', baseUrl);
  for (const [key, names] of Object.entries(channels)) {
    const kind = key === 'rooms' ? 'room' : key === 'tickers' ? 'ticker' : key;
    for (const name of names ?? []) url.searchParams.append(kind, name);
  }
  return url.href;
}

/** HTTP answers after which EventSource gives up too: retrying would not change them. */
function isFinalStatus(status: number): boolean {
  return status === 204 || (status >= 400 && status < 500 && status !== 408 && status !== 429);
}

/** Opens an event stream that reconnects (and resumes) by itself until `close()`. */
export function subscribe<E extends object = BuiltInEvents>(url: string, options: SubscribeOptions = {}): GatewayStream<E> {
  const doFetch = options.fetch ?? fetch;
  const maxRetryMs = options.maxRetryMs ?? 30_000;
  const listeners: Listeners = {};
  let state: ConnectionState = 'connecting';
  let lastEventId = options.lastEventId ?? '';
  let retryMs = options.retryMs ?? 3000;
  let failuresInARow = 0;
  let abort = new AbortController();
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let unauthorizedInARow = 0;

  function emit(type: string, value: unknown, meta?: EventMeta): void {
    for (const listener of listeners[type] ?? []) {
      // never: the overloads of `on` tie each listener to its type; here they are one set.
      (listener as (value: unknown, meta: EventMeta | undefined) => void)(value, meta);
    }
  }

  function setState(next: ConnectionState): void {
    if (state === next) return;
    state = next;
    emit('state', next);
  }

  function dispatch(message: SseMessage): void {
    if (message.lastEventId !== '') lastEventId = message.lastEventId;
    let data: unknown;
    try {
      data = JSON.parse(message.data);
    } catch {
      data = message.data;
    }
    emit(message.event, data, { id: message.id, lastEventId: message.lastEventId });
  }

  async function connectOnce(): Promise<void> {
    const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache', ...options.headers };
    if (options.getToken) {
      const token = await options.getToken();
      if (state === 'closed') return;
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
    }
    const resumed = lastEventId !== '';
    if (resumed) headers['last-event-id'] = lastEventId;
    const response = await doFetch(url, { headers, signal: abort.signal });
    if (response.status !== 200 || !response.headers.get('content-type')?.startsWith('text/event-stream')) {
      await response.body?.cancel();
      const error = Object.assign(new Error(`GET ${url} answered ${response.status}`), { status: response.status });
      throw error;
    }
    failuresInARow = 0;
    unauthorizedInARow = 0;
    setState('open');
    emit('open', { resumed, lastEventId });
    if (response.body === null) return;
    const parser = new SseParser();
    // A reader rather than `for await` over the body: Safari's streams are not async-iterable.
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        const messages = parser.feed(value);
        if (parser.retry !== undefined) retryMs = parser.retry;
        for (const message of messages) {
          dispatch(message);
          if (state === 'closed') return;
        }
        // The id counts even when no event came with it (the gateway's id right after connecting).
        lastEventId = parser.lastEventId || lastEventId;
      }
    } finally {
      reader.releaseLock();
    }
  }

  function scheduleReconnect(): void {
    const delay = Math.min(retryMs * 2 ** Math.max(0, failuresInARow - 1), Math.max(retryMs, maxRetryMs));
    setState('reconnecting');
    retryTimer = setTimeout(run, delay);
  }

  function run(): void {
    retryTimer = undefined;
    connectOnce().then(
      () => {
        if (state === 'closed') return;
        emit('error', { error: new Error('the stream ended'), willRetry: true });
        scheduleReconnect();
      },
      (error: unknown) => {
        if (state === 'closed') return;
        const status = (error as { status?: number }).status;
        // With getToken, a 401 is retried once: the token may have expired on the way.
        unauthorizedInARow = status === 401 ? unauthorizedInARow + 1 : 0;
        const retryUnauthorized = options.getToken !== undefined && status === 401 && unauthorizedInARow === 1;
        const final = status !== undefined && isFinalStatus(status) && !retryUnauthorized;
        const reported = error instanceof Error ? error : new Error(String(error));
        if (state !== 'open') failuresInARow += 1;
        emit('error', { error: reported, willRetry: !final, ...(status === undefined ? {} : { status }) });
        if (final) {
          setState('closed');
          return;
        }
        abort = new AbortController();
        scheduleReconnect();
      },
    );
  }

  function on(type: string, listener: (value: never, meta: EventMeta) => void): () => void {
    const set = (listeners[type] ??= new Set());
    set.add(listener);
    return () => set.delete(listener);
  }

  run();

  return {
    url,
    get state() {
      return state;
    },
    get lastEventId() {
      return lastEventId;
    },
    get retryMs() {
      return retryMs;
    },
    on,
    iterate<K extends keyof (E & ControlEvents)>(types: readonly K[], iterateOptions: { maxBuffered?: number } = {}) {
      const maxBuffered = iterateOptions.maxBuffered ?? 1000;
      return new EventIterator<StreamEvent<K, E>>(
        ({ push, stop, fail, on: onQueue }) => {
          if (state === 'closed') {
            stop();
            return;
          }
          const removers = types.map((type) =>
            on(type as string, (data: (E & ControlEvents)[K], meta: EventMeta) => push({ type, data, meta } as StreamEvent<K, E>)),
          );
          removers.push(on('state', (next: ConnectionState) => next === 'closed' && stop()));
          onQueue('highWater', () => fail(new Error(`more than ${maxBuffered} events waiting for the loop: it cannot keep up`)));
          return () => {
            for (const remove of removers) remove();
          };
        },
        { highWaterMark: maxBuffered },
      );
    },
    close() {
      if (state === 'closed') return;
      setState('closed');
      clearTimeout(retryTimer);
      abort.abort();
    },
    // The cast: one `on` implementation serves both overloads, which TypeScript cannot infer.
  } as GatewayStream<E>;
}
