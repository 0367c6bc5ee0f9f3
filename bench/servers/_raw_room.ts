// The least a server must do to speak Presently's wire protocol to the load
// generator: ids, a member list for the joiner's snapshot, a per-room seq and
// one `ev` frame per event. No store, guards, limits, batching or backpressure.

/** 128 random bits, base64url: the same size as Presently's connection ids. */
export function randomId(): string {
  const buf = crypto.getRandomValues(new Uint8Array(16));
  let s = "";
  for (const b of buf) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The `hello` frame a raw server sends first. */
export function hello(cid: string): string {
  return `{"t":"hello","v":1,"cid":"${cid}","token":"raw","hb":[10000,30000],"resumed":false}`;
}

/** A room: members, states, seq. Each event becomes one frame. */
export class RawRoom {
  seq = 0;
  readonly members = new Map<string, Record<string, never>>();
  readonly states = new Map<string, unknown>();
  readonly #prefix: string;

  constructor(readonly name: string) {
    this.#prefix = `{"t":"ev","r":${JSON.stringify(name)},"e":[[`;
  }

  /** Add a member; returns the join event frame. */
  join(cid: string): string {
    this.members.set(cid, {});
    return `${this.#prefix}${++this.seq},"j","${cid}",{}]]}`;
  }

  /** Remove a member; returns the leave event frame, or null when absent. */
  leave(cid: string): string | null {
    if (!this.members.delete(cid)) return null;
    this.states.delete(cid);
    return `${this.#prefix}${++this.seq},"l","${cid}"]]}`;
  }

  /** Set a state; returns the state event frame. */
  state(cid: string, state: unknown): string {
    this.states.set(cid, state);
    return `${this.#prefix}${++this.seq},"s","${cid}",${JSON.stringify(state)}]]}`;
  }

  /** The joiner's answer: the snapshot at the current seq. */
  snapshotAnswer(id: number): string {
    const present: Array<{ id: string; meta: Record<string, never> }> = [];
    for (const [cid, meta] of this.members) present.push({ id: cid, meta });
    return JSON.stringify({
      t: "ok",
      id,
      seq: this.seq,
      present,
      states: [...this.states],
    });
  }
}

/** Parse a request frame the way any server must (JSON + the fields used). */
export function parseRequest(
  data: unknown,
): { op: string; id: number; room: string; sub?: boolean; state?: unknown } | null {
  if (typeof data !== "string") return null;
  try {
    const f = JSON.parse(data);
    return f !== null && typeof f === "object" && typeof f.op === "string" ? f : null;
  } catch {
    return null;
  }
}
