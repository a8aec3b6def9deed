import type { ExportEvent, ExportListener, SubscribeOptions, Unsubscribe } from "./subscription.js";
import { isTerminalStatus } from "./types.js";
import type { Job } from "./types.js";
import { aborted } from "./wait.js";

type Subscribe = (code: string, listener: ExportListener, options?: SubscribeOptions) => Unsubscribe;

/**
 * The snapshots of `code` as an async iterator: one subscription like any other (so it
 * shares the code's stream), opened by the first `next()`. It yields every newer
 * snapshot and ends after the terminal one, whatever the state (a FAILED or CANCELLED
 * job is an answer, not an exception); a failed stream (ERROR, STREAM_CLOSED, …) and an
 * abort of `signal` make `next()` reject with the {@link ExportError}. `return()` (a
 * `break` out of `for await`) unsubscribes.
 */
export function jobEvents(subscribe: Subscribe, code: string, signal: AbortSignal | undefined): AsyncIterableIterator<Job> {
  return new JobEvents(subscribe, code, signal);
}

type Outcome = { readonly done: true } | { readonly done: false; readonly error: unknown };

class JobEvents implements AsyncIterableIterator<Job> {
  /** Snapshots not yet taken: each one, in order (a job has few, one per change). */
  readonly #queue: Job[] = [];
  /** `next()` calls waiting for a snapshot or the end. */
  readonly #waiting: { resolve: (result: IteratorResult<Job>) => void; reject: (error: unknown) => void }[] = [];
  #started = false;
  /** How it ended: after the queue drains, done — or this error once, then done. */
  #end: Outcome | undefined;
  #unsubscribe: Unsubscribe = () => {};
  readonly #onAbort = (): void => this.#finish({ done: false, error: aborted(this.code, this.signal?.reason) }, true);

  constructor(
    readonly subscribe: Subscribe,
    readonly code: string,
    readonly signal: AbortSignal | undefined,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<Job> {
    return this;
  }

  next(): Promise<IteratorResult<Job>> {
    if (!this.#started) this.#start();
    const job = this.#queue.shift();
    if (job) return Promise.resolve({ done: false, value: job });
    if (this.#end) return this.#settled();
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<Job>> {
    this.#started = true;
    this.#finish({ done: true }, true);
    return Promise.resolve({ done: true, value: undefined });
  }

  #start(): void {
    this.#started = true;
    if (this.signal?.aborted) {
      this.#onAbort();
      return;
    }
    try {
      this.#unsubscribe = this.subscribe(this.code, (event) => this.#onEvent(event));
    } catch (error) {
      this.#finish({ done: false, error }, true);
      return;
    }
    this.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onEvent(event: ExportEvent): void {
    if (this.#end) return;
    if (event.type === "error") {
      this.#finish({ done: false, error: event.error }, false);
      return;
    }
    this.#push(event.job);
    if (isTerminalStatus(event.job.status)) this.#finish({ done: true }, false);
  }

  #push(job: Job): void {
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve({ done: false, value: job });
    else this.#queue.push(job);
  }

  /** Ends once; `drop` discards snapshots not yet taken (abort, return). */
  #finish(outcome: Outcome, drop: boolean): void {
    if (this.#end) return;
    this.#end = outcome;
    if (drop) this.#queue.length = 0;
    this.signal?.removeEventListener("abort", this.#onAbort);
    this.#unsubscribe();
    // Waiters exist only while the queue is empty: they get the end now.
    for (const waiter of this.#waiting.splice(0)) this.#settled().then(waiter.resolve, waiter.reject);
  }

  /** The end as `next()` reports it: an error the first time, then done. */
  #settled(): Promise<IteratorResult<Job>> {
    const end = this.#end;
    if (end && !end.done) {
      this.#end = { done: true };
      return Promise.reject(end.error);
    }
    return Promise.resolve({ done: true, value: undefined });
  }
}
