// Helpers shared by the stores for the cluster-wide queries and the presence
// hook queues, so the three stores agree on keys and limits.

import type { HookEventType, ListRoomsOptions, PresenceEvent } from "./types.ts";

/** Default and largest page of `listRooms`. */
const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;

/** The page size `listRooms` uses for `options.limit`. */
export function pageSize(options: ListRoomsOptions | undefined): number {
  const limit = options?.limit ?? PAGE_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1) return PAGE_DEFAULT;
  return Math.min(limit, PAGE_MAX);
}

/**
 * An event's idempotency key. `room:seq` alone repeats when an empty room is
 * forgotten and its seq starts over; the producing time makes it unique.
 */
export function hookKey(event: PresenceEvent): string {
  return `${event.room}:${event.seq}:${event.timestamp}`;
}

/** The letters a hook registration stores for its event types (`j`, `l`, `s`). */
export function hookTypes(types: readonly HookEventType[]): string {
  let out = "";
  if (types.includes("join")) out += "j";
  if (types.includes("leave")) out += "l";
  if (types.includes("state")) out += "s";
  return out;
}

/** Whether a registration's letters take this event. */
export function hookTakes(letters: string, event: PresenceEvent): boolean {
  return letters.includes(event.type[0]!);
}

/** The union of two registrations' letters, in `jls` order. */
export function widenHookTypes(a: string, b: string): string {
  return [..."jls"].filter((c) => a.includes(c) || b.includes(c)).join("");
}
