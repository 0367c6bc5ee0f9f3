// Presence webhooks on top of `onPresence`: POST each delivery as JSON, signed
// with HMAC-SHA256 (Web Crypto) over "<timestamp>.<body>", and the check the
// receiving side runs. A non-2xx answer or a network error throws, so
// `onPresence` retries it with backoff and the same idempotency key.

import { PresenceError } from "../errors.ts";
import { toHex } from "../_hex.ts";
import type { PresenceHookEvent, PresenceHookHandler } from "./hooks.ts";

/** Header names of a presence webhook request. */
export const WEBHOOK_HEADERS = {
  /** The delivery's idempotency key (the same on every retry). */
  key: "presently-key",
  /** When it was signed, in ms since the epoch. */
  timestamp: "presently-timestamp",
  /** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
  signature: "presently-signature",
} as const;

/**
 * Options of {@linkcode webhook}.
 *
 * @example
 * ```ts
 * import type { WebhookOptions } from "@presently/presently";
 * const options: WebhookOptions = { secret: "whsec_example", timeoutMs: 5_000 };
 * console.log(options.timeoutMs); // 5000
 * ```
 */
export interface WebhookOptions {
  /** The shared secret the receiver verifies with. */
  secret: string;
  /** Extra request headers (e.g. an API key of the receiver). */
  headers?: Record<string, string>;
  /** Abort an attempt after this many ms (then it is retried). Default 10000. */
  timeoutMs?: number;
  /** The `fetch` to use. Default the global one. */
  fetch?: typeof fetch;
}

async function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [usage],
  );
}

function unhex(text: string): Uint8Array<ArrayBuffer> | null {
  if (text.length % 2 !== 0 || !/^[0-9a-f]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * A presence hook handler that POSTs each delivery to `url` as JSON, signed
 * with HMAC-SHA256. Headers: `presently-key` (idempotency key),
 * `presently-timestamp` (ms) and `presently-signature` (`v1=<hex>` over
 * `"<timestamp>.<body>"`). A non-2xx answer, a timeout or a network error
 * throws, so `onPresence` retries with backoff and the same key. Verify on
 * the receiving side with {@linkcode verifyWebhook}.
 *
 * @param url The receiver.
 * @param options The secret, extra headers, timeout.
 * @returns A handler for {@linkcode PresenceServer.onPresence}.
 *
 * @example
 * ```ts
 * import { PresenceServer, verifyWebhook, webhook } from "@presently/presently";
 * const secret = "whsec_example";
 * const received: string[] = [];
 * const receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
 *   const body = await req.text();
 *   if (!(await verifyWebhook(secret, body, req.headers))) return new Response(null, { status: 401 });
 *   received.push(JSON.parse(body).type);
 *   return new Response(null, { status: 204 });
 * });
 * const server = new PresenceServer();
 * server.trackPresence("lobby");
 * server.onPresence(webhook(`http://127.0.0.1:${receiver.addr.port}/hooks`, { secret }), { pollMs: 10 });
 * await server.addMember("lobby");
 * while (received.length === 0) await new Promise((r) => setTimeout(r, 10));
 * console.log(received); // ["join"]
 * await server.close();
 * await receiver.shutdown();
 * ```
 */
export function webhook(url: string | URL, options: WebhookOptions): PresenceHookHandler {
  if (!options.secret) throw new PresenceError("bad_request", "webhook() needs a secret");
  const key = hmacKey(options.secret, "sign");
  const send = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return async (hook: PresenceHookEvent) => {
    const body = JSON.stringify(hook);
    const timestamp = String(Date.now());
    const mac = await crypto.subtle.sign(
      "HMAC",
      await key,
      new TextEncoder().encode(`${timestamp}.${body}`),
    );
    const res = await send(url, {
      method: "POST",
      body,
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        ...options.headers,
        "content-type": "application/json",
        [WEBHOOK_HEADERS.key]: hook.key,
        [WEBHOOK_HEADERS.timestamp]: timestamp,
        [WEBHOOK_HEADERS.signature]: `v1=${toHex(mac)}`,
      },
    });
    await res.body?.cancel();
    if (!res.ok) {
      throw new PresenceError("hook_failed", `Webhook ${url} answered ${res.status}`);
    }
  };
}

/**
 * Check a presence webhook request on the receiving side: the signature
 * must match the raw body and timestamp (compared in constant time by Web
 * Crypto), and the timestamp must be within `toleranceMs` of now (replays).
 *
 * @param secret The shared secret.
 * @param body The raw request body, as text (verify before parsing).
 * @param headers The request headers.
 * @param options `toleranceMs` (default 300000: five minutes), `now`.
 * @returns `true` when the request is authentic and fresh.
 *
 * @example
 * ```ts
 * import { verifyWebhook } from "@presently/presently";
 * async function receive(req: Request): Promise<Response> {
 *   const body = await req.text();
 *   if (!(await verifyWebhook("whsec_example", body, req.headers))) {
 *     return new Response("bad signature", { status: 401 });
 *   }
 *   const hook = JSON.parse(body); // { key, type, room, userId, ... }
 *   console.log(hook.key, hook.type); // drop keys you have already handled
 *   return new Response(null, { status: 204 });
 * }
 * console.log((await receive(new Request("http://x/", { method: "POST", body: "{}" }))).status); // 401
 * ```
 */
export async function verifyWebhook(
  secret: string,
  body: string,
  headers: Headers,
  options: { toleranceMs?: number; now?: number } = {},
): Promise<boolean> {
  const timestamp = headers.get(WEBHOOK_HEADERS.timestamp);
  const signature = headers.get(WEBHOOK_HEADERS.signature);
  if (timestamp === null || signature === null || !signature.startsWith("v1=")) return false;
  const at = Number(timestamp);
  const now = options.now ?? Date.now();
  if (!Number.isFinite(at) || Math.abs(now - at) > (options.toleranceMs ?? 300_000)) return false;
  const mac = unhex(signature.slice(3));
  if (mac === null) return false;
  return await crypto.subtle.verify(
    "HMAC",
    await hmacKey(secret, "verify"),
    mac,
    new TextEncoder().encode(`${timestamp}.${body}`),
  );
}
