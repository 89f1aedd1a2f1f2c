/**
 * One chaos subscriber: a spec-conformant `EventSource` (the `eventsource` package, WHATWG
 * behaviour: reconnects with `Last-Event-ID` after a dropped stream, gives up for good on any
 * non-200 answer or a wrong content type) plus cheap bookkeeping of what it received.
 */
import { EventSource } from 'eventsource';
import { seqOfText, type Received } from './accounting.ts';

const CLOSED = 2;

export interface SubscriberState {
  name: string;
  kind: 'single' | 'multi';
  rooms: string[];
  /** Connections opened (the first one included). */
  opens: number;
  /** `error` events seen (each drop or failed attempt). */
  errors: number;
  /** HTTP status of the answer that made it give up, when it gave up on one. */
  gaveUpStatus?: number;
  gaveUpMessage?: string;
  /** When it gave up (ms since the run started), or undefined. */
  gaveUpAtS?: number;
  resets: number;
  resetReasons: Record<string, number>;
  overflows: number;
  lags: number;
  /** Events of other types, or messages whose text is not the run's. */
  unexpected: number;
  /**
   * Automatic reconnects sent without `Last-Event-ID`. The `eventsource` package (through
   * eventsource-parser 3) ignores the `id:` of a frame without `data:`, unlike browsers (WHATWG
   * HTML "dispatch the event": the last event ID is set before an empty data buffer returns), so
   * a client that got no event yet reconnects with no position and starts live.
   */
  reconnectsWithoutId: number;
}

/** A subscriber: its EventSource, and per room the seqs received in arrival order. */
export class Subscriber implements Received {
  readonly state: SubscriberState;
  readonly received = new Map<string, number[]>();
  readonly seen = new Map<string, Set<number>>();
  /** The `id` of the last event received (what a new EventSource passes as `?lastEventId=`). */
  lastEventId = '';
  /** Set while the run keeps this client away on purpose: its CLOSED state is not a give-up. */
  away = false;
  /** Called after every message (for waits that watch one seq). */
  onSeq: ((room: string, seq: number) => void) | undefined;
  private source: EventSource | undefined;
  private opened: Promise<void> = Promise.resolve();

  constructor(
    name: string,
    readonly rooms: string[],
    private readonly baseUrl: string,
    private readonly startedAt: number,
  ) {
    this.state = {
      name,
      kind: rooms.length > 1 ? 'multi' : 'single',
      rooms,
      opens: 0,
      errors: 0,
      resets: 0,
      resetReasons: {},
      overflows: 0,
      lags: 0,
      unexpected: 0,
      reconnectsWithoutId: 0,
    };
    for (const room of rooms) {
      this.received.set(room, []);
      this.seen.set(room, new Set());
    }
  }

  /** The stream URL: `/events/:room` for one room, `/events?room=…&room=…` for several. */
  url(lastEventId?: string): string {
    const base = this.rooms.length === 1 ? new URL(`/events/${this.rooms[0]}`, this.baseUrl) : new URL('/events', this.baseUrl);
    if (this.rooms.length > 1) for (const room of this.rooms) base.searchParams.append('room', room);
    if (lastEventId) base.searchParams.set('lastEventId', lastEventId);
    return base.toString();
  }

  /** Opens the EventSource (again, after `leave()`, with the last id it had); resolves on the first `open`. */
  connect(lastEventId?: string): Promise<void> {
    this.away = false;
    let requests = 0;
    const source = new EventSource(this.url(lastEventId), {
      fetch: (url, init) => {
        requests += 1;
        if (requests > 1 && init.headers['Last-Event-ID'] === undefined) this.state.reconnectsWithoutId += 1;
        return fetch(url, init);
      },
    });
    this.source = source;
    this.opened = new Promise<void>((resolve) => {
      source.addEventListener('open', () => {
        this.state.opens += 1;
        resolve();
      });
      source.addEventListener('error', (event) => {
        this.state.errors += 1;
        if (source.readyState === CLOSED && !this.away && this.source === source) {
          this.state.gaveUpStatus = event.code;
          this.state.gaveUpMessage = event.message;
          this.state.gaveUpAtS = Math.round((Date.now() - this.startedAt) / 100) / 10;
          resolve();
        }
      });
    });
    source.addEventListener('message', (event) => {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      let data: { room?: unknown; text?: unknown };
      try {
        data = JSON.parse(event.data) as { room?: unknown; text?: unknown };
      } catch {
        this.state.unexpected += 1;
        return;
      }
      const room = typeof data.room === 'string' ? data.room : undefined;
      const seq = seqOfText(data.text);
      const list = room === undefined ? undefined : this.received.get(room);
      if (room === undefined || seq === undefined || list === undefined) {
        this.state.unexpected += 1;
        return;
      }
      list.push(seq);
      this.seen.get(room)!.add(seq);
      this.onSeq?.(room, seq);
    });
    source.addEventListener('reset', (event) => {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      this.state.resets += 1;
      let reason = 'unknown';
      try {
        reason = String((JSON.parse(event.data) as { reason?: unknown }).reason ?? 'unknown');
      } catch {
        // keep 'unknown'
      }
      this.state.resetReasons[reason] = (this.state.resetReasons[reason] ?? 0) + 1;
    });
    source.addEventListener('overflow', () => {
      this.state.overflows += 1;
    });
    source.addEventListener('lag', () => {
      this.state.lags += 1;
    });
    for (const type of ['delete', 'price_update', 'auth_expired']) {
      source.addEventListener(type, () => {
        this.state.unexpected += 1;
      });
    }
    return this.opened;
  }

  /** Closes the stream on purpose (the client goes away); `lastEventId` is kept for coming back. */
  leave(): void {
    this.away = true;
    this.source?.close();
  }

  /** Closes for good at the end of the run. */
  close(): void {
    this.away = true;
    this.source?.close();
  }

  /** True when its EventSource stopped for good without the run asking it to (a give-up). */
  get gaveUp(): boolean {
    return this.state.gaveUpAtS !== undefined;
  }

  get readyState(): number {
    return this.source?.readyState ?? CLOSED;
  }
}
