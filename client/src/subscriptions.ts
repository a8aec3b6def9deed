import { ExportError } from "./errors.js";
import type { ConnectionState, PerJobTransport, SharedTransport, StreamSink } from "./stream.js";
import { isTerminalStatus } from "./types.js";
import type { Job, StreamEvent } from "./types.js";

/** What a listener is told: a new snapshot of the job, or that the stream failed. */
export type ExportEvent =
  | { readonly type: "snapshot"; readonly job: Job }
  | { readonly type: "error"; readonly error: ExportError };

export type ExportListener = (event: ExportEvent) => void;

/** Stops one listener; calling it again does nothing. */
export type Unsubscribe = () => void;

export interface SubscribeOptions {
  /** Also called with the error when the subscription fails (after `listener`'s error event). */
  readonly onError?: (error: ExportError) => void;
  /**
   * Called with the connection's state: the current one right after subscribing (on the
   * next microtask), then on every change. A reconnect is `connecting`, not an error.
   */
  readonly onConnection?: (state: ConnectionState) => void;
}

/** What {@link SubscriptionRegistry.observe} reports: any job the client learns about. */
export type JobObservation =
  | { readonly type: "snapshot"; readonly job: Job }
  | { readonly type: "removed"; readonly code: string };

/** One listener's place in a subscription. */
interface ListenerEntry {
  readonly listener: ExportListener;
  readonly options: SubscribeOptions;
  active: boolean;
  /** Seq of the last snapshot this listener got, so a late joiner never sees one twice. */
  lastSeq: number;
  lastState: ConnectionState | undefined;
}

/** The shared stream of one code and everyone listening to it. */
interface Subscription {
  readonly code: string;
  readonly listeners: Set<ListenerEntry>;
  latest: Job | undefined;
  state: ConnectionState;
  ended: boolean;
  /** A release is queued for the next microtask (the last listener left). */
  releasing: boolean;
  stop: () => void;
}

/** How the registry reaches the server: one stream per code, or one for all. */
export type Streams =
  | { readonly mode: "per-job"; readonly transport: PerJobTransport }
  | {
      readonly mode: "multiplex";
      readonly transport: SharedTransport;
      /**
       * Fetches the snapshot of a code nothing is known of yet, once per subscription.
       * The shared stream only speaks of this session's jobs: without the seed, a
       * subscribe to an unknown (or someone else's) code would wait forever instead of
       * failing with NOT_FOUND as it does in per-job mode.
       */
      readonly seed: (code: string) => Promise<Job>;
    };

/** How many codes' latest snapshots are kept for late subscribers and observers. */
export const KNOWN_JOBS_LIMIT = 1000;

/**
 * The dedupe: one {@link Subscription} per code in `subscriptions`, however many
 * listeners, in both modes. The entry is created by the first subscribe, joined by the
 * next ones, and closed and deleted on a terminal status, on ERROR, on a fatal stream
 * error, or when its last listener leaves — one microtask later, so that React's
 * StrictMode subscribe → unsubscribe → subscribe in one tick keeps the one stream. A
 * subscribe after that starts a fresh one.
 *
 * In `multiplex` mode the Map is the dispatcher of the one shared EventSource: opened
 * with the first entry, closed (one microtask later) when the Map is empty. That stream
 * also sends snapshots of jobs nobody subscribed to; the latest of each code is kept
 * (bounded by {@link KNOWN_JOBS_LIMIT}) so a later subscribe gets it at once.
 */
export class SubscriptionRegistry {
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #streams: Streams;
  /** Latest snapshot of every code learnt from any source, oldest first. */
  readonly #known = new Map<string, Job>();
  readonly #observers = new Set<(observation: JobObservation) => void>();
  #shared: { stop: () => void; state: ConnectionState } | undefined;
  #sharedCloseQueued = false;

  constructor(streams: Streams) {
    this.#streams = streams;
  }

  subscribe(code: string, listener: ExportListener, options: SubscribeOptions = {}): Unsubscribe {
    const entry: ListenerEntry = { listener, options, active: true, lastSeq: -1, lastState: undefined };
    const subscription = this.#subscriptions.get(code) ?? this.#create(code);
    subscription.listeners.add(entry);
    // The listener learns the current state without waiting for the next change, but
    // never synchronously inside subscribe() (the caller may not hold its unsubscribe yet).
    queueMicrotask(() => this.#catchUp(subscription, entry));
    return () => this.#leave(subscription, entry);
  }

  /** Codes with an open subscription right now (one per code, whatever the listener count). */
  openCodes(): string[] {
    return [...this.#subscriptions.keys()];
  }

  /** True while the multiplexed stream is open (multiplex mode only). */
  sharedOpen(): boolean {
    return this.#shared !== undefined;
  }

  /** The latest snapshot known for `code` (from a stream, start, get, list or cancel). */
  known(code: string): Job | undefined {
    return this.#known.get(code);
  }

  /** Records a snapshot learnt outside the streams (start, get, list, cancel). */
  remember(job: Job): void {
    if (!this.#learn(job)) return;
    // A subscription of this code learns it too (dedupe by seq keeps it exactly once).
    const subscription = this.#subscriptions.get(job.code);
    if (subscription) this.#onEvent(subscription, job);
  }

  /** Forgets a code that the server deleted. */
  forget(code: string): void {
    if (!this.#known.delete(code)) return;
    this.#notify({ type: "removed", code });
  }

  /** Calls `observer` with every newer snapshot of any job, and with removals. */
  observe(observer: (observation: JobObservation) => void): Unsubscribe {
    const wrapped = (observation: JobObservation): void => observer(observation);
    this.#observers.add(wrapped);
    return () => {
      this.#observers.delete(wrapped);
    };
  }

  #create(code: string): Subscription {
    const subscription: Subscription = {
      code,
      listeners: new Set(),
      latest: undefined,
      state: "connecting",
      ended: false,
      releasing: false,
      stop: noop,
    };
    const sink: StreamSink = {
      event: (event) => this.#onEvent(subscription, event),
      state: (state) => this.#onState(subscription, state),
      fatal: (error) => this.#end(subscription, { type: "error", error }),
    };
    this.#subscriptions.set(code, subscription);
    try {
      if (this.#streams.mode === "per-job") {
        subscription.stop = this.#streams.transport.open(code, sink);
      } else {
        this.#openMultiplexed(subscription);
      }
    } catch (error) {
      this.#subscriptions.delete(code);
      throw error;
    }
    return subscription;
  }

  #openMultiplexed(subscription: Subscription): void {
    if (this.#streams.mode !== "multiplex") return;
    const known = this.#known.get(subscription.code);
    subscription.latest = known;
    // A finished job never changes again: its known snapshot is the whole answer, and
    // the catch-up microtask ends the subscription with it. No stream needed.
    if (known && isTerminalStatus(known.status)) return;
    this.#connectShared();
    subscription.state = this.#shared?.state ?? "connecting";
    if (known) return;
    const { code } = subscription;
    this.#streams.seed(code).then(
      (job) => {
        if (job.code === code) this.remember(job);
      },
      (error: unknown) => {
        // Only a definite answer ends the subscription (e.g. 404: not this session's
        // job); a network blip is left to the stream, which may still deliver.
        if (error instanceof ExportError && typeof error.status === "number" && error.status >= 400 && error.status < 500) {
          if (!subscription.latest) this.#end(subscription, { type: "error", error });
        }
      },
    );
  }

  #connectShared(): void {
    if (this.#shared || this.#streams.mode !== "multiplex") return;
    const shared = { stop: noop, state: "connecting" as ConnectionState };
    this.#shared = shared;
    shared.stop = this.#streams.transport.connect({
      event: (event) => {
        if (this.#shared !== shared) return;
        if (event.status === "ERROR") {
          this.forget(event.code);
          const subscription = this.#subscriptions.get(event.code);
          if (subscription) this.#onEvent(subscription, event);
          return;
        }
        // Snapshots are idempotent and resent on every (re)connect: only newer ones count.
        if (!this.#learn(event)) return;
        const subscription = this.#subscriptions.get(event.code);
        if (subscription) this.#onEvent(subscription, event);
      },
      state: (state) => {
        if (this.#shared !== shared) return;
        shared.state = state;
        for (const subscription of [...this.#subscriptions.values()]) this.#onState(subscription, state);
      },
      fatal: (error) => {
        if (this.#shared !== shared) return;
        this.#shared = undefined;
        shared.stop();
        for (const subscription of [...this.#subscriptions.values()]) {
          this.#end(subscription, { type: "error", error });
        }
      },
    });
  }

  /** Closes the shared stream one microtask after the Map became empty, unless refilled. */
  #releaseShared(): void {
    if (this.#sharedCloseQueued || !this.#shared) return;
    this.#sharedCloseQueued = true;
    queueMicrotask(() => {
      this.#sharedCloseQueued = false;
      if (this.#subscriptions.size > 0 || !this.#shared) return;
      const { stop } = this.#shared;
      this.#shared = undefined;
      stop();
    });
  }

  /** Stores a snapshot if it is newer than the one known; tells observers. */
  #learn(job: Job): boolean {
    const known = this.#known.get(job.code);
    if (known && job.seq <= known.seq) return false;
    this.#known.delete(job.code);
    this.#known.set(job.code, job);
    if (this.#known.size > KNOWN_JOBS_LIMIT) {
      const oldest = this.#known.keys().next().value;
      if (oldest !== undefined) this.#known.delete(oldest);
    }
    this.#notify({ type: "snapshot", job });
    return true;
  }

  #notify(observation: JobObservation): void {
    for (const observer of [...this.#observers]) guard(() => observer(observation));
  }

  #catchUp(subscription: Subscription, entry: ListenerEntry): void {
    if (!entry.active || subscription.ended) return;
    deliverState(entry, subscription.state);
    const { latest } = subscription;
    if (!latest) return;
    if (isTerminalStatus(latest.status)) {
      this.#end(subscription, { type: "snapshot", job: latest });
      return;
    }
    deliver(entry, { type: "snapshot", job: latest });
  }

  #onState(subscription: Subscription, state: ConnectionState): void {
    if (subscription.ended) return;
    subscription.state = state;
    for (const entry of [...subscription.listeners]) deliverState(entry, state);
  }

  #onEvent(subscription: Subscription, event: StreamEvent): void {
    if (subscription.ended || event.code !== subscription.code) return;
    if (event.status === "ERROR") {
      this.#end(subscription, {
        type: "error",
        error: ExportError.fromStreamError(event.code, event.error),
      });
      return;
    }
    if (this.#streams.mode === "per-job") this.#learn(event);
    // Defensive: a reconnect may replay what we already have; snapshots only move forward.
    if (subscription.latest && event.seq <= subscription.latest.seq) return;
    subscription.latest = event;
    if (isTerminalStatus(event.status)) {
      this.#end(subscription, { type: "snapshot", job: event });
      return;
    }
    for (const entry of [...subscription.listeners]) {
      deliver(entry, { type: "snapshot", job: event });
    }
  }

  /**
   * Ends a subscription with its last event. The stream is closed and the entry deleted
   * before the listeners run, so a listener that subscribes again from inside its
   * callback starts a fresh subscription instead of joining the finished one.
   */
  #end(subscription: Subscription, last: ExportEvent): void {
    if (subscription.ended) return;
    this.#close(subscription);
    const listeners = [...subscription.listeners];
    subscription.listeners.clear();
    for (const entry of listeners) {
      deliver(entry, last);
      if (last.type === "error" && entry.active && entry.options.onError) {
        const { onError } = entry.options;
        guard(() => onError(last.error));
      }
      entry.active = false;
    }
  }

  #leave(subscription: Subscription, entry: ListenerEntry): void {
    if (!entry.active) return;
    entry.active = false;
    subscription.listeners.delete(entry);
    if (subscription.listeners.size > 0 || subscription.ended || subscription.releasing) return;
    subscription.releasing = true;
    queueMicrotask(() => {
      subscription.releasing = false;
      if (subscription.listeners.size === 0 && !subscription.ended) this.#close(subscription);
    });
  }

  #close(subscription: Subscription): void {
    subscription.ended = true;
    if (this.#subscriptions.get(subscription.code) === subscription) {
      this.#subscriptions.delete(subscription.code);
    }
    subscription.stop();
    if (this.#subscriptions.size === 0) this.#releaseShared();
  }
}

function deliver(entry: ListenerEntry, event: ExportEvent): void {
  if (!entry.active) return;
  if (event.type === "snapshot") {
    if (event.job.seq <= entry.lastSeq) return;
    entry.lastSeq = event.job.seq;
  }
  guard(() => entry.listener(event));
}

function deliverState(entry: ListenerEntry, state: ConnectionState): void {
  if (!entry.active || entry.lastState === state) return;
  entry.lastState = state;
  const { onConnection } = entry.options;
  if (onConnection) guard(() => onConnection(state));
}

/**
 * One throwing listener must not starve the others; its error is rethrown on a
 * microtask, like an event handler's, instead of being swallowed.
 */
function guard(call: () => void): void {
  try {
    call();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

function noop(): void {}
