// A minimal WebSocket client on raw TCP (Bun.connect) for the load generator:
// one JS callback per TCP read rather than per message, and a socket that can
// be cut without a close frame. Text frames only; client frames use an
// all-zero mask key, which RFC 6455 servers must accept.

interface BunSocket {
  data: WsClient;
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  setNoDelay?(on: boolean): boolean;
}

interface BunLike {
  connect(options: {
    hostname: string;
    port: number;
    data: WsClient;
    socket: typeof HANDLERS;
  }): Promise<BunSocket>;
}

const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the owner of a client hears. */
export interface WsEvents {
  /** The upgrade succeeded. */
  open(client: WsClient): void;
  /** A complete text message arrived. */
  text(client: WsClient, text: string): void;
  /** The connection is gone (any cause). */
  close(client: WsClient): void;
}

const HANDLERS = {
  open(s: BunSocket): void {
    s.data.onSocketOpen(s);
  },
  data(s: BunSocket, chunk: Uint8Array): void {
    s.data.onBytes(chunk);
  },
  drain(s: BunSocket): void {
    s.data.onDrain();
  },
  close(s: BunSocket): void {
    s.data.onGone();
  },
  error(s: BunSocket): void {
    s.data.onGone();
  },
  end(s: BunSocket): void {
    s.data.onGone();
  },
};

/** One WebSocket connection. */
export class WsClient {
  socket: BunSocket | null = null;
  closed = false;
  /** The code of the close frame the server sent, if it sent one. */
  closeCode: number | null = null;
  /** Bytes received but not yet parsed (a partial frame). */
  #rest: Uint8Array | null = null;
  #upgraded = false;
  #out: Uint8Array[] = [];
  #frag: string | null = null;
  #gone = false;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly path: string,
    readonly events: WsEvents,
  ) {}

  /** Open the TCP connection and send the upgrade request. */
  async connect(): Promise<void> {
    await Bun.connect({
      hostname: this.host,
      port: this.port,
      data: this,
      socket: HANDLERS,
    });
  }

  /** Send a text message. */
  send(text: string): void {
    if (this.closed || !this.socket) return;
    const payload = encoder.encode(text);
    const n = payload.length;
    const head = n < 126 ? 6 : n < 65536 ? 8 : 14;
    const frame = new Uint8Array(head + n);
    frame[0] = 0x81;
    if (n < 126) frame[1] = 0x80 | n;
    else if (n < 65536) {
      frame[1] = 0x80 | 126;
      frame[2] = n >>> 8;
      frame[3] = n & 0xff;
    } else {
      frame[1] = 0x80 | 127;
      new DataView(frame.buffer).setBigUint64(2, BigInt(n));
    }
    // The 4 mask bytes stay zero, so the payload goes as is.
    frame.set(payload, head);
    this.#write(frame);
  }

  /** Cut the TCP connection: no close frame, as a lost network looks. */
  cut(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.terminate();
  }

  /** Close with a close frame (code 1000). */
  close(): void {
    if (this.closed || !this.socket) return;
    this.#write(new Uint8Array([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]));
    this.closed = true;
    this.socket.end();
  }

  #write(frame: Uint8Array): void {
    const s = this.socket!;
    if (this.#out.length > 0) {
      this.#out.push(frame);
      return;
    }
    const n = s.write(frame);
    if (n < frame.length) this.#out.push(frame.subarray(Math.max(0, n)));
  }

  onSocketOpen(s: BunSocket): void {
    this.socket = s;
    s.setNoDelay?.(true); // small frames: no Nagle delay
    s.write(encoder.encode(
      `GET ${this.path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
  }

  onDrain(): void {
    const s = this.socket;
    if (!s) return;
    while (this.#out.length > 0) {
      const frame = this.#out[0]!;
      const n = s.write(frame);
      if (n < frame.length) {
        this.#out[0] = frame.subarray(Math.max(0, n));
        return;
      }
      this.#out.shift();
    }
  }

  onGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.closed = true;
    this.socket = null;
    this.events.close(this);
  }

  onBytes(chunk: Uint8Array): void {
    let buf = chunk;
    const rest = this.#rest;
    if (rest !== null) {
      buf = new Uint8Array(rest.length + chunk.length);
      buf.set(rest);
      buf.set(chunk, rest.length);
      this.#rest = null;
    }
    let off = 0;
    const len = buf.length;
    if (!this.#upgraded) {
      let end = -1;
      for (let i = 3; i < len; i++) {
        if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
          end = i + 1;
          break;
        }
      }
      if (end < 0) {
        this.#rest = buf.slice();
        return;
      }
      const status = decoder.decode(buf.subarray(0, Math.min(end, 16)));
      if (!status.startsWith("HTTP/1.1 101")) {
        this.cut();
        return;
      }
      this.#upgraded = true;
      off = end;
      this.events.open(this);
    }
    while (off + 2 <= len) {
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      let n = b1 & 0x7f;
      let head = 2;
      if (n === 126) {
        if (off + 4 > len) break;
        n = (buf[off + 2]! << 8) | buf[off + 3]!;
        head = 4;
      } else if (n === 127) {
        if (off + 10 > len) break;
        n = buf[off + 6]! * 2 ** 24 +
          ((buf[off + 7]! << 16) | (buf[off + 8]! << 8) | buf[off + 9]!);
        head = 10;
      }
      if (b1 & 0x80) head += 4; // servers never mask; skip the key if one did
      const start = off + head;
      const end = start + n;
      if (end > len) break;
      off = end;
      const op = b0 & 0x0f;
      if (op === 1 || op === 0) {
        const text = decoder.decode(buf.subarray(start, end));
        if ((b0 & 0x80) === 0) {
          this.#frag = (this.#frag ?? "") + text;
          continue;
        }
        const whole = this.#frag === null ? text : this.#frag + text;
        this.#frag = null;
        this.events.text(this, whole);
        if (this.closed) return;
      } else if (op === 9) {
        const body = buf.slice(start, end);
        const pong = new Uint8Array(6 + body.length);
        pong[0] = 0x8a;
        pong[1] = 0x80 | body.length;
        pong.set(body, 6);
        this.#write(pong);
      } else if (op === 8) {
        if (n >= 2) this.closeCode = (buf[start]! << 8) | buf[start + 1]!;
        this.closed = true;
        this.socket?.end();
        return;
      }
    }
    if (off < len) this.#rest = buf.slice(off);
  }
}
