// What every framework page shares: the client, the page's identity from the
// URL, and the store of the room. Each framework file renders the same UI:
//
//   <button id="toggle">   mount / unmount the roster (joins / leaves)
//   <button id="type">     set this connection's state { typing: true }
//   <ul id="roster">       one <li data-cid data-user data-typing data-self> per connection
//   <b id="count">         users in the room (a selector on `count` only)
//
// window.presently = { client, store, countRenders } for the tests.

import { PresenceClient } from "../../client.ts";
import { roomStore } from "../../presence.ts";

/** This page's connection state. */
export type State = { typing?: boolean };
/** What the server puts in metadata (from the URL, see server.ts). */
export type Meta = { userId: string; name: string };

const q = new URLSearchParams(location.search);
const proto = location.protocol === "https:" ? "wss" : "ws";

/** One client per page, shared by every component. */
export const client = new PresenceClient<State, Meta>(`${proto}://${location.host}/ws`, {
  params: { user: q.get("user") ?? "anon", name: q.get("name") ?? "Anon" },
});
void client.connect();

/** The room every component of the page shows. */
export const ROOM = q.get("room") ?? "doc";

/** The room's store: one per client and room, whichever component asks. */
export const store = roomStore(client, ROOM, { metadataIdentifier: (m) => m.userId });

/** Renders of the count badge (which selects `count` only), and roster mounts. */
export const stats = { countRenders: 0, rosterMounts: 0 };

(globalThis as unknown as { presently: unknown }).presently = { client, store, stats };
