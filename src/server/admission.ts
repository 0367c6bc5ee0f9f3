// Admission and connection limits: what is decided at the HTTP upgrade,
// before a socket exists. The origin allow-list, the connection limits
// (total, per IP, per user; a resume takes over a connection they already
// count), the outcome of `authenticate` turned into a ticket (or a refusal
// told over HTTP, or after the upgrade as close code 4401), the protocol
// version and subprotocol. The counts per IP and per user live here too.

import { PROTOCOL_VERSION } from "../constants.ts";
import { PresenceError, type PresenceErrorCode } from "../errors.ts";
import type { Metadata } from "../protocol.ts";
import type { PresenceLimits } from "./options.ts";
import type { Admission } from "./socket.ts";

/** What an accepted upgrade carries to `open()`. */
export interface Ticket {
  meta: Metadata;
  url: string;
  remoteAddr: string | null;
  resume: string | null;
  badVersion: boolean;
  /** Refused after the upgrade: close with 4401 and this reason. */
  refuse?: PresenceErrorCode;
}

/** The upgrade checks and the counts they keep. */
export class Gate {
  readonly #limits: PresenceLimits;
  readonly #origins: readonly string[] | undefined;
  readonly #userOf: ((meta: Metadata) => string | null) | null;
  readonly #perIp = new Map<string, number>();
  readonly #perUser = new Map<string, number>();

  constructor(
    limits: PresenceLimits,
    origins: readonly string[] | undefined,
    userOf: ((meta: Metadata) => string | null) | null,
  ) {
    this.#limits = limits;
    this.#origins = origins;
    this.#userOf = userOf;
  }

  /**
   * The checks before `authenticate`: the origin, the total and per-IP
   * limits (`total`: connections held now). `null` when they pass.
   */
  precheck(
    request: Request,
    remoteAddr: string | null,
    total: number,
    resuming: boolean,
  ): Admission | null {
    const origin = request.headers.get("origin");
    if (this.#origins && origin !== null && !this.#origins.includes(origin)) {
      return { ok: false, status: 403, message: "Origin not allowed" };
    }
    if (!resuming && total >= this.#limits.maxConnections) {
      return { ok: false, status: 503, message: "Too many connections" };
    }
    if (
      !resuming && remoteAddr !== null &&
      (this.#perIp.get(remoteAddr) ?? 0) >= this.#limits.maxConnectionsPerIp
    ) {
      return { ok: false, status: 429, message: "Too many connections from this address" };
    }
    return null;
  }

  /**
   * The admission after `authenticate` answered `meta` (or threw `thrown`):
   * a ticket, or a refusal. A `PresenceError` "token_expired" or
   * "unauthorized" is told after the upgrade, as close code 4401 with the
   * code as reason: browsers cannot read an HTTP 401, and the client
   * re-authenticates.
   */
  admit(
    request: Request,
    remoteAddr: string | null,
    meta: Metadata | null,
    thrown: unknown,
    resuming: (token: string | null) => boolean,
  ): Admission {
    const refuse = thrown instanceof PresenceError &&
        (thrown.code === "token_expired" || thrown.code === "unauthorized")
      ? thrown.code
      : undefined;
    if (!refuse && (meta === null || typeof meta !== "object")) {
      return { ok: false, status: 401, message: "Unauthorized" };
    }
    meta ??= {};
    const user = refuse ? null : this.#userOf?.(meta) ?? null;
    const url = new URL(request.url);
    const resume = url.searchParams.get("resume");
    if (
      !refuse && user !== null && !resuming(resume) &&
      (this.#perUser.get(user) ?? 0) >= this.#limits.maxConnectionsPerUser
    ) {
      return { ok: false, status: 429, message: "Too many connections for this user" };
    }
    const v = url.searchParams.get("v");
    const ticket: Ticket = {
      meta,
      url: request.url,
      remoteAddr,
      resume,
      badVersion: v !== null && v !== String(PROTOCOL_VERSION),
    };
    if (refuse) ticket.refuse = refuse;
    const offered = (request.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((p) => p.trim()).filter((p) => p.length > 0);
    const admission: Admission = { ok: true, ticket };
    if (offered.length > 0) {
      admission.protocol = offered.includes("presently") ? "presently" : offered[0]!;
    }
    return admission;
  }

  /** A limit filled up between the admission and the socket's opening. */
  overLimit(ticket: Ticket, total: number): boolean {
    const user = this.#userOf?.(ticket.meta) ?? null;
    return total >= this.#limits.maxConnections ||
      (ticket.remoteAddr !== null &&
        (this.#perIp.get(ticket.remoteAddr) ?? 0) >= this.#limits.maxConnectionsPerIp) ||
      (user !== null && (this.#perUser.get(user) ?? 0) >= this.#limits.maxConnectionsPerUser);
  }

  /** Count a connection in (`+1`, when it opens) or out (`-1`, when it finishes). */
  count(remoteAddr: string | null, userId: string | null, delta: 1 | -1): void {
    if (remoteAddr !== null) bump(this.#perIp, remoteAddr, delta);
    if (userId !== null) bump(this.#perUser, userId, delta);
  }
}

function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
