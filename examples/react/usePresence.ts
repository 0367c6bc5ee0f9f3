// A copyable React hook: the live members and states of a room, from
// `client.presence(room)`. A thin wrapper over the framework-free store in
// examples/signals/presence_signal.ts (copy both files). This repository has
// no React dependency, so React comes in once, where you define the hook:
//
//   import * as React from "react";
//   import { createUsePresence } from "./usePresence.ts";
//   export const usePresence = createUsePresence(React);
//
//   function Roster({ client }: { client: PresenceClient<{ typing?: boolean }> }) {
//     const { status, members, states } = usePresence(client, "room:lobby");
//     if (status !== "ready") return <p>{status}</p>;
//     return <ul>{[...members].map(([id, meta]) => (
//       <li key={id}>{String(meta.name)}{states.get(id)?.typing ? " is typing" : ""}</li>
//     ))}</ul>;
//   }
//
// (Or drop the factory and `import { useSyncExternalStore } from "react"`.)

import type { Metadata, PresenceClient } from "../../client.ts";
import { presenceSignal, type PresenceSnapshot } from "../signals/presence_signal.ts";

export type { PresenceSnapshot } from "../signals/presence_signal.ts";

/** The one React hook used, typed locally (React 18 or later has it). */
export interface ReactLike {
  /** `React.useSyncExternalStore`. */
  useSyncExternalStore<T>(
    subscribe: (onChange: () => void) => () => void,
    getSnapshot: () => T,
    getServerSnapshot?: () => T,
  ): T;
}

/** The hook `createUsePresence` returns. */
export type UsePresence = <State = unknown, Meta extends Metadata = Metadata>(
  client: PresenceClient<State, Meta>,
  room: string,
) => PresenceSnapshot<State, Meta>;

/**
 * Make the `usePresence(client, room)` hook. It re-renders the component on
 * every change of the room's members or states. The component still joins
 * the room (or not) with the client itself; the hook only watches.
 *
 * @param React Your `react` module.
 * @returns The hook.
 */
export function createUsePresence(React: ReactLike): UsePresence {
  return (client, room) => {
    // Cached per client and room: the same store, with stable functions, on every render.
    const store = presenceSignal(client, room);
    return React.useSyncExternalStore(store.subscribe, store.get, store.get);
  };
}
