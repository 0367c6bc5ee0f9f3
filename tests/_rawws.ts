// A WebSocket client on raw TCP (node:net, so it runs under Deno and Bun) for
// attack tests: it writes hand-made frames (text with invalid UTF-8, any
// opcode, fragments), can stop reading its socket, and can drop the TCP
// connection without a close frame.

import net from "node:net";
import { Buffer } from "node:buffer";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of `RawWs.connect`. */
export interface RawWsOptions {
  path?: string;
  headers?: Record<string, string>;
  /** Values for `Sec-WebSocket-Protocol`. */
  protocols?: string[];
  /** Ms to wait for the handshake. Default 5000. */
  timeoutMs?: number;
}

/** A raw WebSocket client connection. */
export class RawWs {
  readonly socket: net.Socket;
  /** HTTP status of the upgrade answer. */
  status = 0;
  /** Response headers of the upgrade (lower-case names). */
  readonly headers = new Map<string, string>();
  /** Text messages received, in order. */
  readonly texts: string[] = [];
  /** The close frame the server sent, if any. */
  closeFrame: { code: number; reason: string } | null = null;
  /** The TCP connection ended. */
  ended = false;
  /** Bytes of WebSocket payload received. */
  received = 0;
  /** Called for each text message (after it is stored, unless `keep` is false). */
  onText: ((text: string) => void) | null = null;
  /** Store texts in `texts`. */
  keep = true;
  /** Called once the TCP connection is gone. */
  onEnd: (() => void) | null = null;
  #buf: Buffer = Buffer.alloc(0);
  #frag: Buffer[] = [];
  #fragOp = 0;
  #waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
  }

  /** Open a TCP connection and perform the upgrade handshake. */
  static connect(port: number, options: RawWsOptions = {}): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.setNoDelay(true);
      const ws = new RawWs(socket);
      let head = Buffer.alloc(0);
      let upgraded = false;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error("handshake timed out"));
      }, options.timeoutMs ?? 5000);
      socket.on("connect", () => {
        const lines = [
          `GET ${options.path ?? "/?v=1"} HTTP/1.1`,
          `Host: 127.0.0.1:${port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          `Sec-WebSocket-Key: ${
            Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64")
          }`,
          "Sec-WebSocket-Version: 13",
        ];
        if (options.protocols) {
          lines.push(`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`);
        }
        for (const [k, v] of Object.entries(options.headers ?? {})) lines.push(`${k}: ${v}`);
        socket.write(lines.join("\r\n") + "\r\n\r\n");
      });
      socket.on("data", (chunk: Buffer) => {
        if (upgraded) return ws.#onBytes(chunk);
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const [statusLine, ...rest] = head.subarray(0, end).toString("latin1").split("\r\n");
        ws.status = Number(statusLine!.split(" ")[1]);
        for (const line of rest) {
          const i = line.indexOf(":");
          if (i > 0) {
            ws.headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
          }
        }
        upgraded = true;
        clearTimeout(timer);
        resolve(ws);
        if (ws.status !== 101) return;
        const tail = head.subarray(end + 4);
        if (tail.length > 0) ws.#onBytes(tail);
      });
      const gone = () => {
        ws.ended = true;
        clearTimeout(timer);
        if (!upgraded) reject(new Error("connection closed during the handshake"));
        ws.#wake();
        ws.onEnd?.();
      };
      socket.on("close", gone);
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #onBytes(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) break;
      const fin = (b[0]! & 0x80) !== 0;
      const op = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) break;
      const payload = b.subarray(at, at + len);
      this.#buf = b.subarray(at + len);
      this.received += len;
      this.#onFrame(fin, op, payload);
    }
    this.#wake();
  }

  #onFrame(fin: boolean, op: number, payload: Buffer): void {
    if (op === 0x8) {
      this.closeFrame = {
        code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
        reason: payload.subarray(2).toString("utf8"),
      };
      return;
    }
    if (op === 0x9) return this.sendFrame(0xa, payload);
    if (op === 0xa) return;
    if (op !== 0) {
      this.#fragOp = op;
      this.#frag = [];
    }
    this.#frag.push(Buffer.from(payload));
    if (!fin) return;
    const data = this.#frag.length === 1 ? this.#frag[0]! : Buffer.concat(this.#frag);
    this.#frag = [];
    if (this.#fragOp !== 0x1) return;
    const text = decoder.decode(data);
    if (this.keep) this.texts.push(text);
    this.onText?.(text);
  }

  /**
   * Write one frame with any opcode and payload: masked, unless `masked` is
   * false; `rsv` sets the reserved bits (0x70) for protocol-violation tests.
   */
  sendFrame(
    op: number,
    payload: Uint8Array | string,
    fin = true,
    opts: { rsv?: number; masked?: boolean } = {},
  ): void {
    if (this.socket.destroyed) return;
    const data = typeof payload === "string" ? encoder.encode(payload) : payload;
    const masked = opts.masked ?? true;
    const len = data.length;
    const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const body = headLen + (masked ? 4 : 0);
    const frame = Buffer.allocUnsafe(body + len);
    frame[0] = (fin ? 0x80 : 0) | ((opts.rsv ?? 0) & 0x70) | op;
    const bit = masked ? 0x80 : 0;
    if (len < 126) frame[1] = bit | len;
    else if (len < 65536) {
      frame[1] = bit | 126;
      frame.writeUInt16BE(len, 2);
    } else {
      frame[1] = bit | 127;
      frame.writeBigUInt64BE(BigInt(len), 2);
    }
    if (!masked) {
      frame.set(data, body);
      this.socket.write(frame);
      return;
    }
    const mask = crypto.getRandomValues(new Uint8Array(4));
    frame.set(mask, headLen);
    for (let i = 0; i < len; i++) frame[body + i] = data[i]! ^ mask[i & 3]!;
    this.socket.write(frame);
  }

  /** Send a text frame (the payload bytes are sent as given, valid UTF-8 or not). */
  sendText(payload: Uint8Array | string): void {
    this.sendFrame(0x1, payload);
  }

  /** Send a binary frame. */
  sendBinary(payload: Uint8Array): void {
    this.sendFrame(0x2, payload);
  }

  /** Stop reading: the kernel buffers fill and the server's sends back up. */
  pause(): void {
    this.socket.pause();
  }

  /** Read again. */
  resume(): void {
    this.socket.resume();
  }

  /** Wait until `cond` holds (checked on every received chunk), or time out. */
  async waitFor(cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.ended) {
        if (cond()) return;
        throw new Error(`connection ended while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Parsed JSON of every text message received so far. */
  json(): Record<string, unknown>[] {
    return this.texts.map((t) => JSON.parse(t));
  }

  /** Send a close frame and end our side. */
  close(code = 1000): void {
    const p = new Uint8Array(2);
    p[0] = code >> 8;
    p[1] = code & 0xff;
    this.sendFrame(0x8, p);
    this.socket.end();
  }

  /** Drop the TCP connection without a close frame. */
  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A protocol client on RawWs (TCP_NODELAY; Deno's WebSocket client waits for
 * delayed ACKs, ~40 ms per request) that keeps nothing: answers resolve by
 * id, events go to `onEvents` with their arrival time.
 */
export class LiteClient {
  ws!: RawWs;
  cid = "";
  onEvents: ((events: unknown[][], at: number) => void) | null = null;
  #id = 0;
  #waiting = new Map<number, (f: Record<string, unknown>) => void>();
  static async open(port: number, path = "/?v=1"): Promise<LiteClient> {
    const c = new LiteClient();
    c.ws = await RawWs.connect(port, { path });
    c.ws.keep = false;
    const onText = (text: string) => {
      const at = performance.now();
      const f = JSON.parse(text);
      if (f.t === "hello") c.cid = f.cid;
      else if (f.t === "ok" || f.t === "err") {
        c.#waiting.get(f.id)?.(f);
        c.#waiting.delete(f.id);
      } else if (f.t === "ev") c.onEvents?.(f.e, at);
      else if (f.t === "ping") c.ws.sendText('{"op":"pong"}');
    };
    for (const t of c.ws.texts) onText(t);
    c.ws.onText = onText;
    c.ws.onEnd = () => {
      for (const w of c.#waiting.values()) w({ t: "err", code: "closed" });
      c.#waiting.clear();
    };
    await c.ws.waitFor(() => c.cid !== "", 5000, "hello");
    return c;
  }
  request(op: string, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = ++this.#id;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.ws.sendText(JSON.stringify({ op, id, ...fields }));
    });
  }
}
