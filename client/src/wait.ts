import { ExportError } from "./errors.js";
import type { ExportEvent, ExportListener, Unsubscribe } from "./subscription.js";
import type { Job } from "./types.js";

type Subscribe = (code: string, listener: ExportListener) => Unsubscribe;

/**
 * Resolves with the COMPLETED job of `code`; rejects with an {@link ExportError} when it
 * ends FAILED or CANCELLED, its stream fails, or `signal` aborts. A listener like any
 * other, so it shares the code's stream.
 */
export function waitForCompletion(subscribe: Subscribe, code: string, signal: AbortSignal | undefined): Promise<Job> {
  return new Promise<Job>((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted(code, signal.reason));
      return;
    }
    new Wait(code, signal, resolve, reject).start(subscribe);
  });
}

/** One waitFor: settles once, then lets go of its listener and of the signal. */
class Wait {
  #settled = false;
  #unsubscribe: Unsubscribe = () => {};
  readonly #onAbort = (): void => this.#settle(() => this.reject(aborted(this.code, this.signal?.reason)));

  constructor(
    readonly code: string,
    readonly signal: AbortSignal | undefined,
    readonly resolve: (job: Job) => void,
    readonly reject: (error: unknown) => void,
  ) {}

  start(subscribe: Subscribe): void {
    // Subscribed before the abort listener, so a synchronous throw (no EventSource)
    // leaves nothing behind.
    this.#unsubscribe = subscribe(this.code, (event) => this.#onEvent(event));
    this.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onEvent(event: ExportEvent): void {
    if (event.type === "error") {
      this.#settle(() => this.reject(event.error));
      return;
    }
    const { job } = event;
    if (job.status === "COMPLETED") this.#settle(() => this.resolve(job));
    else if (job.status === "FAILED" || job.status === "CANCELLED") this.#settle(() => this.reject(ExportError.fromJob(job)));
  }

  #settle(outcome: () => void): void {
    if (this.#settled) return;
    this.#settled = true;
    this.signal?.removeEventListener("abort", this.#onAbort);
    this.#unsubscribe();
    outcome();
  }
}

/** The error of a wait (waitFor, events) that `signal` aborted. */
export function aborted(code: string, reason: unknown): ExportError {
  return new ExportError("ABORTED", `waiting for export ${code} aborted`, { cause: reason });
}
