// Bytes as lowercase hex: script digests for Redis, signatures for webhooks.

/** `bytes` as lowercase hex, two digits a byte. */
export function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}
