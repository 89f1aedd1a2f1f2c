import { memberKey, type PresenceIdentity, type PresenceMember } from './statement.ts';

/**
 * Who holds streams on each channel *of this replica*: identities (one member however many
 * streams, or tabs, it holds) and a count of anonymous streams. A member whose last stream
 * closed stays listed for `graceMs`, so a client reconnecting (EventSource waits `retry:`, then
 * comes back, perhaps to this replica) is not seen to leave and join again.
 *
 * State is O(members held + channels): a channel is forgotten once nobody holds it and its
 * emptiness has been told (see `forget`). The tracker only keeps the state and says which
 * channel changed (`onChange`); publishing and fan-out are the PresenceService's.
 */

interface LocalMember extends PresenceMember {
  streams: number;
  /** Set while the member's last stream is closed: when it fires, the member leaves. */
  leaveTimer: NodeJS.Timeout | null;
}

interface LocalChannel {
  members: Map<string, LocalMember>;
  anonymous: number;
}

export interface PresenceTrackerOptions {
  /** How long a member whose last stream closed stays listed (ms). */
  graceMs: number;
  /** Told whenever a channel's members or anonymous count changed (not for a reconnect within grace). */
  onChange: (channelKey: string) => void;
  /** The clock (ms since the epoch): `since` of a new member. */
  now?: () => number;
}

export class PresenceTracker {
  readonly #channels = new Map<string, LocalChannel>();
  readonly #options: PresenceTrackerOptions;
  readonly #now: () => number;
  #graceMs: number;

  constructor(options: PresenceTrackerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#graceMs = options.graceMs;
  }

  /**
   * The grace of streams closing from now on (ms). A draining replica lengthens it by its drain
   * window: a stream it ends is told to come back after a `retry:` of up to that window, so its
   * member must stay listed that long plus the usual grace.
   */
  setGraceMs(graceMs: number): void {
    this.#graceMs = graceMs;
  }

  /**
   * A stream of `identity` (null: anonymous) opened on the channel; `since`: when the member
   * joined, if it is already in the channel elsewhere (default now). Returns the function that
   * says it closed (idempotent): an anonymous stream stops counting at once, an identity's
   * last stream starts its grace period.
   */
  join(channelKey: string, identity: PresenceIdentity | null, since?: number): () => void {
    let channel = this.#channels.get(channelKey);
    if (channel === undefined) {
      channel = { members: new Map(), anonymous: 0 };
      this.#channels.set(channelKey, channel);
    }
    const held = channel;
    if (identity === null) {
      held.anonymous += 1;
      this.#options.onChange(channelKey);
      let left = false;
      return () => {
        if (left) return;
        left = true;
        held.anonymous -= 1;
        this.#options.onChange(channelKey);
      };
    }
    const key = memberKey(identity);
    let member = held.members.get(key);
    if (member === undefined) {
      member = { sub: identity.sub, name: identity.name, verified: identity.verified, since: since ?? this.#now(), streams: 0, leaveTimer: null };
      held.members.set(key, member);
      this.#options.onChange(channelKey);
    } else if (member.leaveTimer !== null) {
      // Back within grace: no leave, no join.
      clearTimeout(member.leaveTimer);
      member.leaveTimer = null;
    }
    member.streams += 1;
    const joined = member;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      joined.streams -= 1;
      if (joined.streams > 0) return;
      joined.leaveTimer = setTimeout(() => {
        joined.leaveTimer = null;
        if (held.members.get(key) !== joined || joined.streams > 0) return;
        held.members.delete(key);
        this.#options.onChange(channelKey);
      }, this.#graceMs);
      joined.leaveTimer.unref();
    };
  }

  /** The channel's members (those in grace included) and anonymous streams on this replica. */
  view(channelKey: string): { members: PresenceMember[]; anonymous: number } {
    const channel = this.#channels.get(channelKey);
    if (channel === undefined) return { members: [], anonymous: 0 };
    return {
      members: [...channel.members.values()].map(({ sub, name, verified, since }) => ({ sub, name, verified, since })),
      anonymous: channel.anonymous,
    };
  }

  /** The channel's local members by member key, without copying (merging views). */
  membersOf(channelKey: string): ReadonlyMap<string, PresenceMember> | undefined {
    return this.#channels.get(channelKey)?.members;
  }

  anonymousOf(channelKey: string): number {
    return this.#channels.get(channelKey)?.anonymous ?? 0;
  }

  /** True when nobody (member, member in grace, anonymous stream) is held on the channel here. */
  isEmpty(channelKey: string): boolean {
    const channel = this.#channels.get(channelKey);
    return channel === undefined || (channel.members.size === 0 && channel.anonymous === 0);
  }

  /** Drops an empty channel's entry (once its emptiness has been published); no-op otherwise. */
  forget(channelKey: string): void {
    if (this.isEmpty(channelKey)) this.#channels.delete(channelKey);
  }

  /** Channels with an entry (held, or emptied and not yet forgotten). */
  channelKeys(): IterableIterator<string> {
    return this.#channels.keys();
  }

  /** Members held (in grace included), over every channel: for /status and tests of the bound. */
  get memberCount(): number {
    let count = 0;
    for (const channel of this.#channels.values()) count += channel.members.size;
    return count;
  }

  get channelCount(): number {
    return this.#channels.size;
  }

  /** Cancels every grace timer (shutdown). */
  close(): void {
    for (const channel of this.#channels.values()) {
      for (const member of channel.members.values()) if (member.leaveTimer !== null) clearTimeout(member.leaveTimer);
    }
  }
}
