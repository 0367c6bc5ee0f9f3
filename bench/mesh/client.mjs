// The Mesh client for the load generator, resolved from bench/mesh/node_modules.
export { RealtimeClient } from "@prsm/realtime/client";
