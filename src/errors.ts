// The one error type of Presently: a stable `code` plus an optional `cause`.

/**
 * Stable error codes. A request the server refuses is answered with one of
 * these; the client surfaces the same code.
 *
 * @example
 * ```ts
 * import { PresenceError, type PresenceErrorCode } from "@presently/presently";
 * const transient: PresenceErrorCode[] = ["timeout", "closed", "rate_limited", "store_error"];
 * const retryable = (error: PresenceError) => transient.includes(error.code);
 * console.log(retryable(new PresenceError("timeout", "Request timed out"))); // true
 * console.log(retryable(new PresenceError("forbidden", "Room \"admin\" is not allowed"))); // false
 * ```
 */
export type PresenceErrorCode =
  | "bad_request"
  | "unknown_op"
  | "too_large"
  | "forbidden"
  | "not_member"
  | "not_tracked"
  | "rate_limited"
  | "too_many_rooms"
  | "too_many_subscriptions"
  | "invalid_state"
  | "not_found"
  | "unauthorized"
  | "token_expired"
  | "timeout"
  | "closed"
  | "queue_full"
  | "store_error"
  | "hook_failed"
  | "internal";

/**
 * The error every Presently API throws or reports, with a stable `code`.
 *
 * @example
 * ```ts
 * import { PresenceError } from "@presently/presently";
 * const err = new PresenceError("forbidden", "Room \"admin\" is not allowed");
 * console.log(err.code); // "forbidden"
 * ```
 */
export class PresenceError extends Error {
  /** The stable, machine-readable error code. */
  readonly code: PresenceErrorCode;

  /**
   * Create an error.
   *
   * @param code The stable error code.
   * @param message A sentence-case message without a trailing period.
   * @param options Optional `cause`.
   *
   * @example
   * ```ts
   * import { PresenceError } from "@presently/presently";
   * const cause = new Error("ECONNRESET");
   * const error = new PresenceError("store_error", "Store write failed", { cause });
   * console.log(error.code, error.cause === cause); // "store_error" true
   * ```
   */
  constructor(
    code: PresenceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PresenceError";
    this.code = code;
  }
}
