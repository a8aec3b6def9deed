import { ExportError } from "./errors.js";
import { KnownJobs } from "./known.js";
import { SharedStream } from "./stream.js";
import type { PerJobTransport, SharedTransport, StreamSink, TransportKind } from "./stream.js";
import { Listener, Subscription } from "./subscription.js";
import type { ExportListener, SubscribeOptions, Unsubscribe } from "./subscription.js";
import { isTerminalStatus } from "./types.js";
import type { Job, StreamEvent } from "./types.js";

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
      /**
       * Checks a code known from an HTTP answer (e.g. the client's own start()) before
       * the stream speaks of it, or returns undefined when there is no need. A client
       * whose fetch drops the session cookie (Node's bare fetch) gets a stream of a new,
       * empty session that never mentions the code: without the check it would wait
       * forever.
       */
      readonly verify?: (code: string) => Promise<Job> | undefined;
    };

/**
 * The dedupe: one {@link Subscription} per code in `subscriptions`, however many
 * listeners, in both modes. The entry is created by the first subscribe, joined by the
 * next ones, and closed and deleted on a terminal status, on ERROR, on a fatal stream
 * error, or one microtask after its last listener left. A subscribe after that starts a
 * fresh one.
 *
 * In `multiplex` mode the Map is the dispatcher of the one {@link SharedStream}: opened
 * with the first entry, closed (one microtask later) when the Map is empty. That stream
 * also sends snapshots of jobs nobody subscribed to; {@link KnownJobs} keeps the latest
 * of each code, so a later subscribe gets it at once.
 */
export class SubscriptionRegistry {
  readonly known = new KnownJobs();
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #streams: Streams;
  readonly #shared: SharedStream | undefined;
  /** The shared stream sent a snapshot: its session has jobs, so it is the client's. */
  #streamSpoke = false;

  constructor(streams: Streams) {
    this.#streams = streams;
    this.#shared =
      streams.mode === "multiplex" ? new SharedStream(streams.transport, this.#sharedSink()) : undefined;
  }

  subscribe(code: string, listener: ExportListener, options: SubscribeOptions = {}): Unsubscribe {
    if (options.signal?.aborted) return () => {};
    const subscription = this.#subscriptions.get(code) ?? this.#create(code);
    return subscription.join(new Listener(listener, options));
  }

  /** Codes with an open subscription right now (one per code, whatever the listener count). */
  openCodes(): string[] {
    return [...this.#subscriptions.keys()];
  }

  /** EventSources open right now. */
  openConnections(): number {
    if (this.#shared) return this.#shared.open ? 1 : 0;
    return this.#subscriptions.size;
  }

  /** `polling` when any open stream polls (the fallback), `sse` when all stream, undefined when none is open. */
  transport(): TransportKind | undefined {
    if (this.#shared) return this.#shared.open ? this.#shared.transport : undefined;
    let kind: TransportKind | undefined;
    for (const subscription of this.#subscriptions.values()) {
      if (subscription.transport === "polling") return "polling";
      kind = "sse";
    }
    return kind;
  }

  /** Records a snapshot learnt outside the streams (start, get, list, cancel). */
  remember(job: Job): void {
    if (!this.known.learn(job)) return;
    // A subscription of this code learns it too (dedupe by seq keeps it exactly once).
    this.#subscriptions.get(job.code)?.offer(job);
  }

  #create(code: string): Subscription {
    const subscription = new Subscription(code, (closed) => this.#onClose(closed));
    this.#subscriptions.set(code, subscription);
    try {
      if (this.#streams.mode === "per-job") {
        subscription.stop = this.#streams.transport.open(code, this.#perJobSink(subscription));
      } else {
        this.#openMultiplexed(subscription, this.#streams);
      }
    } catch (error) {
      this.#subscriptions.delete(code);
      throw error;
    }
    return subscription;
  }

  #perJobSink(subscription: Subscription): StreamSink {
    return {
      event: (event) => {
        if (subscription.ended || event.code !== subscription.code) return;
        if (event.status !== "ERROR") this.known.learn(event);
        subscription.offer(event);
      },
      state: (state) => subscription.setState(state),
      transport: (kind) => subscription.setTransport(kind),
      fatal: (error) => subscription.end({ type: "error", error }),
    };
  }

  #openMultiplexed(subscription: Subscription, streams: Streams & { mode: "multiplex" }): void {
    const known = this.known.get(subscription.code);
    subscription.latest = known;
    // A finished job never changes again: its known snapshot is the whole answer, and
    // the catch-up microtask ends the subscription with it. No stream needed.
    if (known && isTerminalStatus(known.status)) return;
    this.#shared?.connect();
    subscription.state = this.#shared?.state ?? "connecting";
    subscription.transport = this.#shared?.transport ?? "sse";
    const { code } = subscription;
    const check = !known ? streams.seed(code) : this.#streamSpoke ? undefined : streams.verify?.(code);
    check?.then(
      (job) => {
        if (job.code === code) this.remember(job);
      },
      (error: unknown) => {
        // Only a definite answer ends the subscription (e.g. 404: not this session's
        // job); a network blip is left to the stream, which may still deliver. A failed
        // verify ends it even with a snapshot known: the session does not own the job.
        if (isClientError(error) && (known || !subscription.latest)) subscription.end({ type: "error", error });
      },
    );
  }

  /** Dispatches the shared stream's events by code; its state and failure reach every entry. */
  #sharedSink(): StreamSink {
    return {
      event: (event) => this.#onSharedEvent(event),
      state: (state) => {
        for (const subscription of [...this.#subscriptions.values()]) subscription.setState(state);
      },
      transport: (kind) => {
        for (const subscription of [...this.#subscriptions.values()]) subscription.setTransport(kind);
      },
      fatal: (error) => {
        for (const subscription of [...this.#subscriptions.values()]) subscription.end({ type: "error", error });
      },
    };
  }

  #onSharedEvent(event: StreamEvent): void {
    this.#streamSpoke = true;
    if (event.status === "ERROR") this.known.forget(event.code);
    // Snapshots are idempotent and resent on every (re)connect: only newer ones count.
    else if (!this.known.learn(event)) return;
    this.#subscriptions.get(event.code)?.offer(event);
  }

  #onClose(subscription: Subscription): void {
    if (this.#subscriptions.get(subscription.code) === subscription) {
      this.#subscriptions.delete(subscription.code);
    }
    if (this.#subscriptions.size === 0) this.#shared?.release(() => this.#subscriptions.size > 0);
  }
}

function isClientError(error: unknown): error is ExportError {
  const status = error instanceof ExportError ? error.httpStatus : undefined;
  return status !== undefined && status >= 400 && status < 500;
}
