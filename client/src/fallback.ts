/**
 * A stream that survives buffering and blocking: a wrapper around the SSE transports
 * that switches to polling when the stream does not deliver, and back when it does.
 *
 * Why a message and not a byte: the EventSource API shows neither the BFF's `retry:`
 * line nor its heartbeats (comments), so the first thing a page can see is a message.
 * The BFF sends one at once on every fresh connect, so waiting for it is safe:
 * - per job (`GET /api/exports/{code}/events`): without `Last-Event-ID` (every
 *   EventSource made here is new) the BFF answers with the job's current snapshot, or
 *   a 404 the EventSource reports as an error (bff/internal/httpapi/events.go);
 * - multiplexed (`GET /api/events`): every connect starts with the current snapshot of
 *   each of the session's jobs (multiplex.go); the stream is only open while a code is
 *   subscribed, and a code that is not the session's ends its subscription (the seed's
 *   404), so a session with a subscription has a job to send.
 * A browser's own reconnect (after a drop) resumes with `Last-Event-ID` and may get only
 * a heartbeat, so the watchdog is armed once per EventSource made here, and drops are
 * counted instead: several in a row without a message switch to polling too.
 */
import { ExportError } from "./errors.js";
import { startLoaded } from "./lazy.js";
import type { PerJobTransport, SharedTransport, StreamSink } from "./stream.js";
import type { Job } from "./types.js";

/** How the client decides a stream does not work, and how it polls meanwhile. */
export interface FallbackOptions {
  /** A new EventSource that delivers no message within this many ms is given up. Default 5000. */
  readonly firstMessageMs?: number;
  /** Errors (drops) in a row without a message between them that give up. Default 3. */
  readonly maxFailures?: number;
  /** First interval between snapshot GETs, and the one after a change. Default 2000. */
  readonly pollMs?: number;
  /** The interval grows ×1.5 while nothing changes, up to this. Default 15000. */
  readonly maxPollMs?: number;
  /** Delay before the first background retry of SSE while polling. Default 30000. */
  readonly retrySseMs?: number;
  /** The retry delay doubles after each failed retry, up to this. Default 300000. */
  readonly maxRetrySseMs?: number;
}

export type Settings = Required<FallbackOptions>;

export function fallbackSettings(options: FallbackOptions): Settings {
  return {
    firstMessageMs: options.firstMessageMs ?? 5_000,
    maxFailures: options.maxFailures ?? 3,
    pollMs: options.pollMs ?? 2_000,
    maxPollMs: options.maxPollMs ?? 15_000,
    retrySseMs: options.retrySseMs ?? 30_000,
    maxRetrySseMs: options.maxRetrySseMs ?? 300_000,
  };
}

/** One snapshot GET: the jobs it returned (throws an {@link ExportError} on failure). */
export type Poll = (signal: AbortSignal) => Promise<readonly Job[]>;

/** Per-job streams with fallback: each code falls back (and comes back) on its own. */
export function perJobFallback(sse: PerJobTransport, poll: (code: string) => Poll, settings: Settings): PerJobTransport {
  return {
    open: (code, sink) => new Fallback((inner) => sse.open(code, inner), poll(code), settings, sink).stop,
  };
}

/** The multiplexed stream with fallback: polling is `GET /api/exports`, the session's list. */
export function sharedFallback(sse: SharedTransport, poll: Poll, settings: Settings): SharedTransport {
  return { connect: (sink) => new Fallback((inner) => sse.connect(inner), poll, settings, sink).stop };
}

/** One EventSource made here: the one in use, or a background retry while polling. */
interface Attempt {
  close: () => void;
  watchdog: ReturnType<typeof setTimeout> | undefined;
  failures: number;
}

/**
 * One stream's life: SSE first; polling after a silent start or repeated drops, with
 * SSE retried in the background until a retry delivers in time. `stop` ends all of it.
 */
class Fallback {
  readonly #open: (sink: StreamSink) => () => void;
  readonly #poll: Poll;
  readonly #settings: Settings;
  readonly #sink: StreamSink;
  #stopped = false;
  /** The SSE attempt in use; undefined while polling. */
  #active: Attempt | undefined;
  /** The background retry under way while polling. */
  #retry: Attempt | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryDelay: number;
  /** Stops the polling under way. */
  #stopPolling: (() => void) | undefined;

  constructor(open: (sink: StreamSink) => () => void, poll: Poll, settings: Settings, sink: StreamSink) {
    this.#open = open;
    this.#poll = poll;
    this.#settings = settings;
    this.#sink = sink;
    this.#retryDelay = settings.retrySseMs;
    this.#attempt("active");
  }

  readonly stop = (): void => {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#closeAttempt(this.#active);
    this.#closeAttempt(this.#retry);
    this.#active = this.#retry = undefined;
    clearTimeout(this.#retryTimer);
    this.#stopPolling?.();
    this.#stopPolling = undefined;
  };

  /**
   * Opens an EventSource as the active one or the retry (set before the open, so even a
   * transport that calls back synchronously is heard); its callbacks count only while
   * it is one of the two.
   */
  #attempt(role: "active" | "retry"): void {
    const attempt: Attempt = { close: noop, watchdog: undefined, failures: 0 };
    if (role === "active") this.#active = attempt;
    else this.#retry = attempt;
    attempt.close = this.#open({
      event: (event) => {
        if (this.#retry === attempt) this.#promote(attempt);
        if (this.#active !== attempt) return;
        clearTimeout(attempt.watchdog);
        attempt.failures = 0;
        this.#sink.event(event);
      },
      state: (state) => {
        if (this.#active === attempt) this.#sink.state(state);
        if (state === "open" || (this.#active !== attempt && this.#retry !== attempt)) return;
        attempt.failures += 1;
        if (attempt.failures >= this.#settings.maxFailures || this.#retry === attempt) this.#gaveUp(attempt);
      },
      fatal: (error) => {
        if (this.#active === attempt) {
          clearTimeout(attempt.watchdog);
          this.#sink.fatal(error);
        } else if (this.#retry === attempt) this.#gaveUp(attempt);
      },
    });
    // Given up (or stopped) during the open: close what the open made.
    if (this.#active !== attempt && this.#retry !== attempt) {
      attempt.close();
      return;
    }
    // Armed after the open, which may throw (no EventSource): no timer is left behind.
    attempt.watchdog = setTimeout(() => {
      attempt.watchdog = undefined;
      this.#gaveUp(attempt);
    }, this.#settings.firstMessageMs);
  }

  /** A silent or failing EventSource: the active one gives way to polling, a retry waits longer. */
  #gaveUp(attempt: Attempt): void {
    if (this.#stopped) return;
    this.#closeAttempt(attempt);
    if (this.#active === attempt) {
      this.#active = undefined;
      this.#sink.transport?.("polling");
      this.#sink.state("connecting");
      const sink: PollerSink = {
        // The registry dedupes by seq, and a terminal snapshot ends the subscription,
        // which calls stop: polling ends with it.
        jobs: (jobs) => {
          for (const job of jobs) if (!this.#stopped) this.#sink.event(job);
        },
        state: (state) => this.#sink.state(state),
        fatal: (error) => this.#sink.fatal(error),
      };
      // The poller is a chunk of its own: most pages never need it.
      this.#stopPolling = startLoaded(
        () => import("./polling.js"),
        (module) => module.poll(this.#poll, this.#settings, sink),
        (error) => sink.fatal(new ExportError("STREAM_CLOSED", "the event stream delivered nothing, and the polling code could not load", { cause: error })),
      );
      this.#scheduleRetry();
    } else if (this.#retry === attempt) {
      this.#retry = undefined;
      this.#retryDelay = Math.min(this.#retryDelay * 2, this.#settings.maxRetrySseMs);
      this.#scheduleRetry();
    }
  }

  #scheduleRetry(): void {
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#stopped) this.#attempt("retry");
    }, this.#retryDelay);
  }

  /** A background retry delivered in time: SSE again, polling stops. */
  #promote(attempt: Attempt): void {
    this.#retry = undefined;
    this.#active = attempt;
    this.#retryDelay = this.#settings.retrySseMs;
    this.#stopPolling?.();
    this.#stopPolling = undefined;
    this.#sink.transport?.("sse");
    this.#sink.state("open");
  }

  #closeAttempt(attempt: Attempt | undefined): void {
    if (!attempt) return;
    clearTimeout(attempt.watchdog);
    attempt.watchdog = undefined;
    attempt.close();
  }
}

/** What the poller reports to the stream's life. */
export interface PollerSink {
  jobs(jobs: readonly Job[]): void;
  state(state: "connecting" | "open"): void;
  fatal(error: ExportError): void;
}

function noop(): void {}
