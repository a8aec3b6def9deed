/**
 * The tabs' sharing of one stream: the leader elected by a Web Lock, the others fed over
 * a BroadcastChannel. How and why: crosstab.ts, which loads this chunk when needed.
 */
import type { BroadcastChannelConstructorLike, BroadcastChannelLike, Codec, CrossTabOptions, CrossTabStats, CrossTabTransport, LockManagerLike } from "./crosstab.js";
import type { SharedTransport, StreamSink } from "./stream.js";

/** Latest events kept by the leader for a tab that joins (like the snapshots of a connect). */
const REPLAY_LIMIT = 1000;

/** What the tabs say on the channel. `to` addresses a replay to one tab. */
type Message =
  | { readonly t: "need" | "drop"; readonly tab: string }
  | { readonly t: "tabs"; readonly n: number }
  | { readonly t: "sink"; readonly m: string; readonly a: readonly unknown[]; readonly to?: string };

/** This tab's time holding the lock. */
interface Lead {
  readonly release: () => void;
  /** Closes the stream; undefined while there is none. */
  stop: (() => void) | undefined;
  /** The latest event per code and the latest call of each other sink method. */
  readonly events: Map<string, unknown[]>;
  readonly calls: Map<string, unknown[]>;
  readonly timer: ReturnType<typeof setInterval>;
}

export class CrossTab implements CrossTabTransport {
  readonly #inner: SharedTransport;
  readonly #locks: LockManagerLike;
  readonly #Channel: BroadcastChannelConstructorLike;
  readonly #lockName: string;
  readonly #channelName: string;
  readonly #recheckMs: number;
  readonly #codec: Codec;
  readonly #id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  #channel: BroadcastChannelLike | undefined;
  /** This tab's demand: the registry's sink while it needs the stream. */
  #sink: StreamSink | undefined;
  /** The pending lock request, aborted when the tab stops needing the stream. */
  #waiting: AbortController | undefined;
  #lead: Lead | undefined;
  #tabs = 1;
  #counting = false;
  #countAgain = false;

  constructor(inner: SharedTransport, locks: LockManagerLike, Channel: BroadcastChannelConstructorLike, options: CrossTabOptions, codec: Codec) {
    this.#codec = codec;
    this.#inner = inner;
    this.#locks = locks;
    this.#Channel = Channel;
    this.#lockName = `exportstream:stream:${options.key}`;
    this.#channelName = `exportstream:${options.key}`;
    this.#recheckMs = options.recheckMs ?? 5_000;
  }

  stats(): CrossTabStats {
    return { tabs: this.#sink || this.#lead ? this.#tabs : 1, leader: this.#lead?.stop !== undefined };
  }

  connect(sink: StreamSink): () => void {
    this.#sink = sink;
    this.#openChannel();
    const lead = this.#lead;
    if (lead) {
      this.#ensureStream(lead);
      // After connect returned: the caller drops calls made before it has the stop function.
      queueMicrotask(() => {
        if (this.#sink === sink && this.#lead === lead) this.#replay(lead, (m, a) => callSink(sink, m, a));
      });
      this.#count();
    } else {
      this.#wait();
    }
    return () => {
      if (this.#sink !== sink) return;
      this.#sink = undefined;
      this.#waiting?.abort();
      this.#waiting = undefined;
      if (this.#lead) this.#count();
      else this.#post({ t: "drop", tab: this.#id });
    };
  }

  #openChannel(): void {
    if (this.#channel) return;
    this.#channel = new this.#Channel(this.#channelName);
    this.#channel.onmessage = (event) => this.#receive(event.data);
  }

  #post(message: Message): void {
    this.#channel?.postMessage(message);
  }

  /** Queues for the lock; then tells the leader, once the lock manager has the request. */
  #wait(): void {
    const waiting = new AbortController();
    this.#waiting = waiting;
    this.#locks.request(this.#lockName, { signal: waiting.signal }, () => this.#leadUntilReleased(waiting)).catch(() => {
      // Aborted: the tab no longer needs the stream.
    });
    // A query sent after the request is answered after the lock manager queued it, so
    // the leader's count (a query of its own, on our message) includes this tab.
    this.#locks.query().then(
      () => {
        if (this.#waiting === waiting) this.#post({ t: "need", tab: this.#id });
      },
      () => undefined,
    );
  }

  #leadUntilReleased(granted: AbortController): Promise<void> {
    // A request of this tab made after the granted one (stop, then connect again while
    // the grant was on its way) would count as another tab waiting: the lead covers it.
    if (this.#waiting !== granted) this.#waiting?.abort();
    this.#waiting = undefined;
    return new Promise((release) => {
      const lead: Lead = {
        release,
        stop: undefined,
        events: new Map(),
        calls: new Map(),
        timer: setInterval(() => this.#count(), this.#recheckMs),
      };
      this.#lead = lead;
      if (this.#sink) this.#ensureStream(lead);
      this.#count();
    });
  }

  #ensureStream(lead: Lead): void {
    if (lead.stop) return;
    // The followers' state until the new stream opens (a leader that left had it open).
    lead.calls.set("state", ["connecting"]);
    this.#post({ t: "sink", m: "state", a: ["connecting"] });
    lead.stop = this.#inner.connect(this.#fanOut(lead));
  }

  /** The sink of the leader's stream: each call, whatever the method, goes to every tab. */
  #fanOut(lead: Lead): StreamSink {
    return new Proxy({} as StreamSink, {
      has: (_target, method) => typeof method === "string",
      get: (_target, method) => {
        if (typeof method !== "string" || method === "then") return undefined;
        return (...args: unknown[]) => {
          if (this.#lead !== lead) return;
          if (method === "fatal") {
            // The stream ended for good: the next demand opens a new one.
            lead.stop?.();
            lead.stop = undefined;
            lead.events.clear();
            lead.calls.clear();
          } else {
            remember(lead, method, args);
          }
          this.#post({ t: "sink", m: method, a: args.map(this.#codec.encode) });
          if (this.#sink) callSink(this.#sink, method, args);
          if (method === "fatal") this.#count();
        };
      },
    });
  }

  #replay(lead: Lead, send: (method: string, args: readonly unknown[]) => void): void {
    for (const [method, args] of lead.calls) send(method, args);
    for (const args of lead.events.values()) send("event", args);
  }

  #receive(data: unknown): void {
    if (!isObject(data)) return;
    const message = data as Message;
    const lead = this.#lead;
    if (message.t === "sink") {
      const sink = this.#sink;
      if (lead || !sink || (message.to !== undefined && message.to !== this.#id)) return;
      callSink(sink, message.m, message.a.map(this.#codec.decode));
    } else if (message.t === "tabs") {
      if (!lead) this.#tabs = message.n;
    } else if (lead) {
      if (message.t === "need") {
        const to = message.tab;
        this.#replay(lead, (m, a) => this.#post({ t: "sink", m, a: a.map(this.#codec.encode), to }));
      }
      this.#count();
    }
  }

  /**
   * The leader counts the tabs that need the stream: itself if it does, and every tab
   * waiting for the lock. None: it closes the stream and releases the lock. One count
   * at a time; a request meanwhile counts again after it.
   */
  #count(): void {
    if (this.#counting) {
      this.#countAgain = true;
      return;
    }
    this.#counting = true;
    this.#locks.query().then(
      (state) => this.#counted((state.pending ?? []).filter((each) => each.name === this.#lockName).length),
      () => this.#counted(0),
    );
  }

  #counted(waiting: number): void {
    this.#counting = false;
    const lead = this.#lead;
    if (lead) {
      const tabs = waiting + (this.#sink ? 1 : 0);
      if (tabs === 0) {
        this.#resign(lead);
      } else {
        this.#ensureStream(lead);
        this.#tabs = tabs;
        this.#post({ t: "tabs", n: tabs });
      }
    }
    if (this.#countAgain) {
      this.#countAgain = false;
      this.#count();
    }
  }

  #resign(lead: Lead): void {
    this.#lead = undefined;
    this.#tabs = 1;
    clearInterval(lead.timer);
    lead.stop?.();
    lead.release();
  }
}

function remember(lead: Lead, method: string, args: unknown[]): void {
  const event = args[0];
  if (method !== "event" || !isObject(event) || typeof event["code"] !== "string") {
    lead.calls.set(method, args);
    return;
  }
  const code = event["code"];
  lead.events.delete(code);
  // A code the BFF said is gone is not mentioned to a tab joining later, as on a connect.
  if (event["status"] === "ERROR") return;
  lead.events.set(code, args);
  if (lead.events.size > REPLAY_LIMIT) {
    const oldest = lead.events.keys().next().value;
    if (oldest !== undefined) lead.events.delete(oldest);
  }
}

function callSink(sink: StreamSink, method: string, args: readonly unknown[]): void {
  const call = (sink as unknown as Record<string, unknown>)[method];
  if (typeof call === "function") (call as (...a: unknown[]) => void).apply(sink, [...args]);
}

/** As json.ts's isRecord, here so that this chunk imports no code. */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
