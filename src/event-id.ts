import type { Position } from './bus/types.ts';

/**
 * The SSE `id` of an event: its position in the bus (partition and offset of its topic), the
 * same on every replica, so a client's last id says where it stopped whichever replica served it.
 */
export function eventIdOf(position: Pick<Position, 'partition' | 'offset'>): string {
  return `${position.partition}-${position.offset}`;
}
