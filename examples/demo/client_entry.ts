// What the demo page imports as /client.js: the client, the user-level view
// and the throttled client, bundled for the browser by server.ts / bun.ts.
export * from "../../client.ts";
export * from "../../presence.ts";
export * from "../../throttle.ts";
