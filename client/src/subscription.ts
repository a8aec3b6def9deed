import { ExportError } from "./errors.js";
import { EtaEstimator } from "./eta.js";
import type { ConnectionState, TransportKind } from "./stream.js";
import { isTerminalStatus } from "./types.js";
import type { Job, StreamEvent } from "./types.js";

/** What a listener is told: a new snapshot of the job, or that the stream failed. */
export type ExportEvent =
  | {
      readonly type: "snapshot";
      readonly job: Job;
      /**
       * Estimated milliseconds left, from the job's progress rate (smoothed), as of the
       * snapshot's `updatedAt`; absent until two snapshots showed progress, 0 at the end.
       */
      readonly etaMs?: number;
    }
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
  /** Aborting it unsubscribes this listener (no further event); already aborted: no subscription. */
  readonly signal?: AbortSignal;
  /**
   * Called with how the events come: `sse`, or `polling` while the event stream does not
   * work (see the client's `fallback` option). The current one right after subscribing
   * (on the next microtask), then on every change.
   */
  readonly onTransport?: (kind: TransportKind) => void;
}

/**
 * One listener's place in a subscription. It remembers what it was told, so that a late
 * joiner whose catch-up races a newer event never sees a snapshot or a state twice.
 */
export class Listener {
  #active = true;
  #lastSeq = -1;
  #lastState: ConnectionState | undefined;
  #detach: () => void = noop;
  #lastTransport: TransportKind | undefined;

  constructor(
    readonly listener: ExportListener,
    readonly options: SubscribeOptions,
  ) {}

  get active(): boolean {
    return this.#active;
  }

  /** After this, the listener is never called again. */
  deactivate(): void {
    this.#active = false;
    this.#detach();
  }

  /** Calls `leave` when the options' signal aborts, until the listener is done. */
  leaveOnAbort(leave: () => void): void {
    const { signal } = this.options;
    if (!signal) return;
    signal.addEventListener("abort", leave, { once: true });
    this.#detach = () => signal.removeEventListener("abort", leave);
  }

  deliver(event: ExportEvent): void {
    if (!this.#active) return;
    if (event.type === "snapshot") {
      if (event.job.seq <= this.#lastSeq) return;
      this.#lastSeq = event.job.seq;
    }
    guard(() => this.listener(event));
  }

  deliverState(state: ConnectionState): void {
    if (!this.#active || this.#lastState === state) return;
    this.#lastState = state;
    const { onConnection } = this.options;
    if (onConnection) guard(() => onConnection(state));
  }

  deliverTransport(kind: TransportKind): void {
    if (!this.#active || this.#lastTransport === kind) return;
    this.#lastTransport = kind;
    const { onTransport } = this.options;
    if (onTransport) guard(() => onTransport(kind));
  }

  /** The subscription's last event, then onError for an error; then inactive. */
  deliverLast(last: ExportEvent): void {
    this.deliver(last);
    const { onError } = this.options;
    if (last.type === "error" && this.#active && onError) guard(() => onError(last.error));
    this.deactivate();
  }
}

/**
 * The stream of one code and everyone listening to it. Created by the first subscribe,
 * joined by the next ones; it ends once — with a terminal snapshot, an error, or one
 * microtask after its last listener left — and then calls `onClose` (which closes the
 * stream behind it and deletes the entry) before any listener hears of the end, so a
 * listener that subscribes again from its callback starts a fresh subscription.
 */
export class Subscription {
  readonly code: string;
  /** Newest snapshot seen; a reconnect may replay older ones, which are ignored. */
  latest: Job | undefined;
  state: ConnectionState = "connecting";
  transport: TransportKind = "sse";
  /** Stops the stream behind this subscription (per-job: its own EventSource). */
  stop: () => void = noop;
  readonly #listeners = new Set<Listener>();
  readonly #onClose: (subscription: Subscription) => void;
  readonly #eta = new EtaEstimator();
  #ended = false;
  /** A release is queued for the next microtask (the last listener left). */
  #releasing = false;

  constructor(code: string, onClose: (subscription: Subscription) => void) {
    this.code = code;
    this.#onClose = onClose;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Adds a listener. It learns the current state without waiting for the next change,
   * but never synchronously inside subscribe() (the caller may not hold its unsubscribe
   * yet): on the next microtask.
   */
  join(listener: Listener): Unsubscribe {
    this.#listeners.add(listener);
    queueMicrotask(() => this.#catchUp(listener));
    const leave = (): void => this.#leave(listener);
    listener.leaveOnAbort(leave);
    return leave;
  }

  setState(state: ConnectionState): void {
    if (this.#ended) return;
    this.state = state;
    for (const listener of [...this.#listeners]) listener.deliverState(state);
  }

  setTransport(kind: TransportKind): void {
    if (this.#ended) return;
    this.transport = kind;
    for (const listener of [...this.#listeners]) listener.deliverTransport(kind);
  }

  /** A snapshot or the BFF's ERROR for this code; only newer snapshots count. */
  offer(event: StreamEvent): void {
    if (this.#ended || event.code !== this.code) return;
    if (event.status === "ERROR") {
      this.end({ type: "error", error: ExportError.fromStreamError(event.code, event.error) });
      return;
    }
    if (this.latest && event.seq <= this.latest.seq) return;
    this.latest = event;
    this.#eta.update(event);
    if (isTerminalStatus(event.status)) {
      this.end(this.#snapshot(event));
      return;
    }
    for (const listener of [...this.#listeners]) listener.deliver(this.#snapshot(event));
  }

  /** The snapshot event of `job`, with the current estimate when there is one. */
  #snapshot(job: Job): ExportEvent {
    const etaMs = isTerminalStatus(job.status) ? 0 : this.#eta.etaMs;
    return etaMs === undefined ? { type: "snapshot", job } : { type: "snapshot", job, etaMs };
  }

  /** Ends the subscription with its last event (see the class doc for the order). */
  end(last: ExportEvent): void {
    if (this.#ended) return;
    this.#close();
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const listener of listeners) listener.deliverLast(last);
  }

  #catchUp(listener: Listener): void {
    if (!listener.active || this.#ended) return;
    listener.deliverState(this.state);
    listener.deliverTransport(this.transport);
    const { latest } = this;
    if (!latest) return;
    if (isTerminalStatus(latest.status)) this.end(this.#snapshot(latest));
    else listener.deliver(this.#snapshot(latest));
  }

  /**
   * Closes one microtask after the last listener left, so that React StrictMode's
   * subscribe → unsubscribe → subscribe in one tick keeps the one stream.
   */
  #leave(listener: Listener): void {
    if (!listener.active) return;
    listener.deactivate();
    this.#listeners.delete(listener);
    if (this.#listeners.size > 0 || this.#ended || this.#releasing) return;
    this.#releasing = true;
    queueMicrotask(() => {
      this.#releasing = false;
      if (this.#listeners.size === 0 && !this.#ended) this.#close();
    });
  }

  #close(): void {
    this.#ended = true;
    this.stop();
    this.#onClose(this);
  }
}

/**
 * One throwing listener must not starve the others; its error is rethrown on a
 * microtask, like an event handler's, instead of being swallowed.
 */
export function guard(call: () => void): void {
  try {
    call();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

function noop(): void {}
