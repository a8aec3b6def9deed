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
 *
 * The sharing itself (crosstab-leader.ts) is a chunk of its own, fetched when a client
 * in multiplex mode is created, not with the app's entry: apps in per-job mode, and
 * browsers without Web Locks or BroadcastChannel, never load it. A chunk that cannot
 * load leaves the tab streaming alone.
 */
import { ExportError } from "./errors.js";
import { isRecord } from "./json.js";
import { startLoaded } from "./lazy.js";
import type { SharedTransport } from "./stream.js";

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

export type BroadcastChannelConstructorLike = new (name: string) => BroadcastChannelLike;

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
export interface CrossTabStats {
  /** Tabs sharing this tab's stream, this one included; 1 when not shared. */
  readonly tabs: number;
  /** True while this tab holds the EventSource (shared or not). */
  readonly leader: boolean;
}

export interface CrossTabTransport extends SharedTransport {
  stats(): CrossTabStats;
}

/** Wraps `inner` so that the tabs of one origin share it; falls back to `inner` alone. */
export function crossTabTransport(inner: SharedTransport, options: CrossTabOptions): CrossTabTransport {
  const locks = options.locks ?? webLocks();
  const Channel = options.BroadcastChannel ?? (globalThis as { BroadcastChannel?: BroadcastChannelConstructorLike }).BroadcastChannel;
  if (options.enabled === false || !locks || !Channel) return alone(inner);
  let shared: CrossTabTransport | undefined;
  let loading: Promise<CrossTabTransport> | undefined;
  const load = (): Promise<CrossTabTransport> =>
    (loading ??= import("./crosstab-leader.js").then(
      (module) => (shared = new module.CrossTab(inner, locks, Channel, options, { encode, decode })),
      () => (shared = alone(inner)),
    ));
  // Fetched now, beside the app's own start, so that the first subscription rarely waits for it.
  void load();
  return {
    connect: (sink) => (shared ? shared.connect(sink) : startLoaded(load, (loaded) => loaded.connect(sink), () => {})),
    stats: () => shared?.stats() ?? { tabs: 1, leader: false },
  };
}

/** How sink arguments cross the channel (here, so that the sharing's chunk imports no code). */
export interface Codec {
  encode(value: unknown): unknown;
  decode(value: unknown): unknown;
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
