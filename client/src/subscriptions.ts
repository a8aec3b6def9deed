import { ExportError } from "./errors.js";
import type { StreamTransport } from "./stream.js";
import { isTerminalStatus } from "./types.js";
import type { Job, StreamEvent } from "./types.js";

/** What a listener is told: a new snapshot of the job, or that the stream failed. */
export type ExportEvent =
  | { readonly type: "snapshot"; readonly job: Job }
  | { readonly type: "error"; readonly error: ExportError };

export type ExportListener = (event: ExportEvent) => void;

/** Stops one listener; calling it again does nothing. */
export type Unsubscribe = () => void;

/** One listener's place in a subscription. */
interface ListenerEntry {
  readonly listener: ExportListener;
  active: boolean;
  /** Seq of the last snapshot this listener got, so a late joiner never sees one twice. */
  lastSeq: number;
}

/** The shared stream of one code and everyone listening to it. */
interface Subscription {
  readonly code: string;
  readonly listeners: Set<ListenerEntry>;
  latest: Job | undefined;
  ended: boolean;
  stop: () => void;
}

/**
 * The dedupe: one {@link Subscription} per code in `subscriptions`, however many
 * listeners. The entry is created by the first subscribe, joined by the next ones,
 * and closed and deleted on a terminal status, on ERROR, on a fatal stream error, or
 * when its last listener leaves. A subscribe after that starts a fresh one.
 */
export class SubscriptionRegistry {
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #transport: StreamTransport;

  constructor(transport: StreamTransport) {
    this.#transport = transport;
  }

  subscribe(code: string, listener: ExportListener): Unsubscribe {
    const entry: ListenerEntry = { listener, active: true, lastSeq: -1 };
    const existing = this.#subscriptions.get(code);
    if (existing) {
      existing.listeners.add(entry);
      // The joiner learns the state without waiting for the next change, but never
      // synchronously inside subscribe() (the caller may not hold its unsubscribe yet).
      queueMicrotask(() => {
        if (!existing.ended && existing.latest) {
          deliver(entry, { type: "snapshot", job: existing.latest });
        }
      });
      return () => this.#leave(existing, entry);
    }

    const subscription: Subscription = {
      code,
      listeners: new Set([entry]),
      latest: undefined,
      ended: false,
      stop: noop,
    };
    this.#subscriptions.set(code, subscription);
    try {
      subscription.stop = this.#transport.open(code, {
        event: (event) => this.#onEvent(subscription, event),
        fatal: (error) => this.#end(subscription, { type: "error", error }),
      });
    } catch (error) {
      this.#subscriptions.delete(code);
      throw error;
    }
    return () => this.#leave(subscription, entry);
  }

  /** Codes with an open stream, for diagnostics. */
  openCodes(): string[] {
    return [...this.#subscriptions.keys()];
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
    subscription.ended = true;
    if (this.#subscriptions.get(subscription.code) === subscription) {
      this.#subscriptions.delete(subscription.code);
    }
    subscription.stop();
    const listeners = [...subscription.listeners];
    subscription.listeners.clear();
    for (const entry of listeners) deliver(entry, last);
  }

  #leave(subscription: Subscription, entry: ListenerEntry): void {
    if (!entry.active) return;
    entry.active = false;
    subscription.listeners.delete(entry);
    if (subscription.listeners.size > 0 || subscription.ended) return;
    subscription.ended = true;
    if (this.#subscriptions.get(subscription.code) === subscription) {
      this.#subscriptions.delete(subscription.code);
    }
    subscription.stop();
  }
}

function deliver(entry: ListenerEntry, event: ExportEvent): void {
  if (!entry.active) return;
  if (event.type === "snapshot") {
    if (event.job.seq <= entry.lastSeq) return;
    entry.lastSeq = event.job.seq;
  }
  try {
    entry.listener(event);
  } catch (error) {
    // One throwing listener must not starve the others; surface it like an event
    // handler error instead of swallowing it.
    queueMicrotask(() => {
      throw error;
    });
  }
}

function noop(): void {}
