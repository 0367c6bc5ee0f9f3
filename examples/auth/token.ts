// Signed tokens for the auth recipe: base64url(JSON payload) "." base64url(HMAC-SHA256
// of the first part), with an expiry. WebCrypto only: Deno, Bun, Node and browsers.

/** What a token carries. Every claim but `exp` becomes connection metadata. */
export interface TokenPayload {
  /** The user id. */
  sub: string;
  /** Expiry in seconds since the epoch, as in a JWT. */
  exp: number;
  /** Anything else: a display name, an avatar, private fields such as an email. */
  [claim: string]: unknown;
}

const encoder = new TextEncoder();
const BASE64URL = /^[A-Za-z0-9_-]*$/;

function toBase64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return null;
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function hmacKey(secret: string): Promise<CryptoKey> {
  const raw = encoder.encode(secret);
  // HMAC-SHA256 is only as strong as its key: refuse short secrets.
  if (raw.length < 32) throw new RangeError("Token secret must be at least 32 bytes");
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

/**
 * Sign a payload: what your login endpoint hands to the browser.
 *
 * @param payload The user id (`sub`), the expiry (`exp`, seconds) and any claims.
 * @param secret The server's secret, at least 32 bytes (e.g. 32 random bytes, base64).
 * @returns The token, `base64url(payload).base64url(signature)`.
 * @throws {RangeError} When the secret is shorter than 32 bytes.
 *
 * @example
 * ```ts ignore
 * const token = await signToken(
 *   { sub: "u1", name: "Ada", email: "ada@example.com", exp: Math.floor(Date.now() / 1000) + 3600 },
 *   Deno.env.get("AUTH_SECRET")!,
 * );
 * ```
 */
export async function signToken(payload: TokenPayload, secret: string): Promise<string> {
  const body = toBase64url(encoder.encode(JSON.stringify(payload)));
  const key = await hmacKey(secret);
  const sig = await crypto.subtle.sign("HMAC", key, encoder.encode(body));
  return `${body}.${toBase64url(new Uint8Array(sig))}`;
}

/**
 * Verify a token's signature (in constant time) and expiry.
 *
 * @param token The token from the client.
 * @param secret The secret it was signed with.
 * @param now The current time in ms since the epoch (injectable for tests).
 * @returns The payload, or `null` when the token is malformed, forged or expired.
 * @throws {RangeError} When the secret is shorter than 32 bytes.
 *
 * @example
 * ```ts ignore
 * const payload = await verifyToken(token, secret);
 * if (payload === null) return new Response("Unauthorized", { status: 401 });
 * ```
 */
export async function verifyToken(
  token: string,
  secret: string,
  now: number = Date.now(),
): Promise<TokenPayload | null> {
  const key = await hmacKey(secret);
  const parts = token.split(".");
  if (parts.length !== 2) return null;
  const [body, sigText] = parts as [string, string];
  const sig = fromBase64url(sigText);
  if (sig === null || !(await crypto.subtle.verify("HMAC", key, sig, encoder.encode(body)))) {
    return null;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder().decode(fromBase64url(body) ?? new Uint8Array()));
  } catch {
    return null;
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return null;
  const { sub, exp } = payload as Record<string, unknown>;
  if (typeof sub !== "string" || typeof exp !== "number" || exp * 1000 <= now) return null;
  return payload as TokenPayload;
}
