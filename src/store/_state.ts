// What every store shares about state writes and state events: the rule for
// what a write leaves (and when it clears), and the one shape of a state
// event. Redis builds the same event as JSON inside its Lua scripts
// (`_redis_lua.ts`), from the value this module computes.

import { applyMergePatch } from "../merge_patch.ts";
import type { PresenceEvent, StateWrite } from "./types.ts";

/**
 * What `write` leaves of a state whose current value is `current`
 * (`undefined`: none): the new value, `null` when the write clears it (a
 * `clear`, a `null` or missing state, a `null` or missing patch), and the
 * patch it carried (a patch's event carries it too).
 */
export function applyWrite(
  write: StateWrite,
  current: unknown,
): { value: unknown; patch: unknown } {
  if (write.kind === "set") return { value: write.state ?? null, patch: undefined };
  if (write.kind === "patch" && write.patch !== null && write.patch !== undefined) {
    return { value: applyMergePatch(current, write.patch) ?? null, patch: write.patch };
  }
  return { value: null, patch: undefined };
}

/** True when `write` clears the state, whatever it was. */
export function clears(write: StateWrite): boolean {
  return write.kind === "clear" ||
    (write.kind === "set" && (write.state === null || write.state === undefined)) ||
    (write.kind === "patch" && (write.patch === null || write.patch === undefined));
}

/**
 * A state event: the new state (`null`: cleared), with the patch that made
 * it, or `expired: true` when it is an expiry.
 */
export function stateEvent(
  room: string,
  connectionId: string,
  seq: number,
  state: unknown,
  timestamp: number,
  how: { patch: unknown } | { expired: true } | null = null,
): PresenceEvent {
  if (how !== null && "expired" in how) {
    return { type: "state", room, connectionId, seq, state: null, expired: true, timestamp };
  }
  if (how !== null && how.patch !== undefined && state !== null) {
    return { type: "state", room, connectionId, seq, state, patch: how.patch, timestamp };
  }
  return { type: "state", room, connectionId, seq, state, timestamp };
}
