/**
 * Cross-tab sharing of the multiplexed stream: all tabs of one origin that use one
 * `baseUrl` share one `GET /api/events`. Tabs of one origin share the BFF's session
 * cookie (HttpOnly: no tab can read it, so the key is the origin and `baseUrl`, and a
 * tab's stream carries the jobs of every tab).
 *
 * A tab that needs the stream asks for a Web Lock (`navigator.locks`) named after the
 * key. The one holding it, the leader, opens the stream with the wrapped transport and
 * posts every sink call on a BroadcastChannel; the others, waiting for the lock, apply
 * those calls to their own sink. A tab says on the channel when it starts and stops
 * needing the stream; the leader then counts the tabs waiting on the lock (`locks.query`),
 * keeps the stream while any does, and releases the lock when none does. When the leader
 * closes or crashes the browser releases its lock and a waiting tab opens the stream
 * itself: `/api/events` sends every job's snapshot on connect and each tab keeps the
 * highest seq per code, so nothing is lost and nothing is delivered twice.
 */
import { ExportError } from "./errors.js";
import { isRecord } from "./json.js";
import type { SharedTransport, StreamSink } from "./stream.js";

/** The part of the Web Locks API (`navigator.locks`) used here. */
export interface LockManagerLike {
  request<T>(name: string, options: { signal?: AbortSignal }, granted: () => Promise<T>): Promise<T>;
  query(): Promise<{ readonly pending?: readonly { readonly name?: string }[] | undefined }>;
}

/** The part of a BroadcastChannel used here (a method-style handler: checked bivariantly, so the DOM's fits). */
export interface BroadcastChannelLike {
  onmessage: { bivarianceHack(event: { readonly data: unknown }): void }["bivarianceHack"] | null;
  postMessage(message: unknown): void;
}

type BroadcastChannelConstructorLike = new (name: string) => BroadcastChannelLike;

export interface CrossTabOptions {
  /** Tells apart the streams of one origin: the client's `baseUrl`. */
  readonly key: string;
  /** False: each tab streams alone (the `crossTab: false` option). */
  readonly enabled?: boolean;
  /** Defaults to `navigator.locks`; without it (or a BroadcastChannel) each tab streams alone. */
  readonly locks?: LockManagerLike | undefined;
  readonly BroadcastChannel?: BroadcastChannelConstructorLike | undefined;
  /** How often the leader recounts the waiting tabs (one that crashed sends no goodbye). */
  readonly recheckMs?: number;
}

/** What {@link CrossTabTransport.stats} reports. */
interface CrossTabStats {
  /** Tabs sharing this tab's stream, this one included; 1 when not shared. */
  readonly tabs: number;
  /** True while this tab holds the EventSource (shared or not). */
  readonly leader: boolean;
}

export interface CrossTabTransport extends SharedTransport {
  stats(): CrossTabStats;
}

/** Latest events kept by the leader for a tab that joins (like the snapshots of a connect). */
const REPLAY_LIMIT = 1000;

/** What the tabs say on the channel. `to` addresses a replay to one tab. */
type Message =
  | { readonly t: "need" | "drop"; readonly tab: string }
  | { readonly t: "tabs"; readonly n: number }
  | { readonly t: "sink"; readonly m: string; readonly a: readonly unknown[]; readonly to?: string };

/** Wraps `inner` so that the tabs of one origin share it; falls back to `inner` alone. */
export function crossTabTransport(inner: SharedTransport, options: CrossTabOptions): CrossTabTransport {
  const locks = options.locks ?? webLocks();
  const Channel = options.BroadcastChannel ?? (globalThis as { BroadcastChannel?: BroadcastChannelConstructorLike }).BroadcastChannel;
  if (options.enabled === false || !locks || !Channel) return alone(inner);
  return new CrossTab(inner, locks, Channel, options);
}

/** The browser's Web Locks (secure contexts only: https, localhost), or undefined. */
export function webLocks(): LockManagerLike | undefined {
  return (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
}

/** No sharing: the tab holds its own stream. */
function alone(inner: SharedTransport): CrossTabTransport {
  let connected = 0;
  return {
    connect(sink) {
      const stop = inner.connect(sink);
      connected++;
      let stopped = false;
      return () => {
        if (stopped) return;
        stopped = true;
        connected--;
        stop();
      };
    },
    stats: () => ({ tabs: 1, leader: connected > 0 }),
  };
}

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

class CrossTab implements CrossTabTransport {
  readonly #inner: SharedTransport;
  readonly #locks: LockManagerLike;
  readonly #Channel: BroadcastChannelConstructorLike;
  readonly #lockName: string;
  readonly #channelName: string;
  readonly #recheckMs: number;
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

  constructor(inner: SharedTransport, locks: LockManagerLike, Channel: BroadcastChannelConstructorLike, options: CrossTabOptions) {
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
          this.#post({ t: "sink", m: method, a: args.map(encode) });
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
    if (!isRecord(data)) return;
    const message = data as Message;
    const lead = this.#lead;
    if (message.t === "sink") {
      const sink = this.#sink;
      if (lead || !sink || (message.to !== undefined && message.to !== this.#id)) return;
      callSink(sink, message.m, message.a.map(decode));
    } else if (message.t === "tabs") {
      if (!lead) this.#tabs = message.n;
    } else if (lead) {
      if (message.t === "need") {
        const to = message.tab;
        this.#replay(lead, (m, a) => this.#post({ t: "sink", m, a: a.map(encode), to }));
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
  if (method !== "event" || !isRecord(event) || typeof event["code"] !== "string") {
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

/** A structured clone keeps an Error's message only: an ExportError travels as its fields. */
function encode(value: unknown): unknown {
  if (!(value instanceof ExportError)) return value;
  const { code, message, httpStatus, jobStatus, job } = value;
  return { exportError: { code, message, httpStatus, jobStatus, job } };
}

function decode(value: unknown): unknown {
  if (!isRecord(value) || !isRecord(value["exportError"])) return value;
  const fields = value["exportError"] as Pick<ExportError, "code" | "message" | "httpStatus" | "jobStatus" | "job">;
  const { code, message, httpStatus, jobStatus, job } = fields;
  return new ExportError(code, message, { httpStatus, jobStatus, job });
}
