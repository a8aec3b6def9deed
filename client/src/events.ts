import { ExportError } from "./errors.js";
import type { ExportEvent, ExportListener, Unsubscribe } from "./subscription.js";
import { isTerminalStatus } from "./types.js";
import type { Job } from "./types.js";

type Subscribe = (code: string, listener: ExportListener) => Unsubscribe;

/**
 * The snapshots of `code` as an async generator: one subscription like any other (so it
 * shares the code's stream), opened by the first `next()`. It yields every newer
 * snapshot and ends after the terminal one, whatever the state (a FAILED or CANCELLED
 * job is an answer, not an exception); a failed stream (ERROR, STREAM_CLOSED, …) and an
 * abort of `signal` throw the {@link ExportError}. `return()` (a `break` out of
 * `for await`) unsubscribes.
 */
export async function* jobEvents(subscribe: Subscribe, code: string, signal: AbortSignal | undefined): AsyncGenerator<Job, void, undefined> {
  if (signal?.aborted) throw aborted(code, signal.reason);
  // Events not yet taken, in order (a job has one per change); an abort goes first.
  const queue: ExportEvent[] = [];
  let wake = (): void => {};
  const onAbort = (): void => {
    queue.unshift({ type: "error", error: aborted(code, signal?.reason) });
    wake();
  };
  const unsubscribe = subscribe(code, (event) => {
    queue.push(event);
    wake();
  });
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    // Ends with the subscription's last event (terminal snapshot or error) or the abort.
    for (;;) {
      const event = queue.shift() ?? (await new Promise<void>((resolve) => (wake = resolve)));
      if (!event) continue;
      if (event.type === "error") throw event.error;
      yield event.job;
      if (isTerminalStatus(event.job.status)) return;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    unsubscribe();
  }
}

/**
 * Resolves with the COMPLETED job of `code`; rejects with an {@link ExportError} when it
 * ends FAILED or CANCELLED, its stream fails, or `signal` aborts: {@link jobEvents} to
 * its end.
 */
export async function waitForCompletion(subscribe: Subscribe, code: string, signal: AbortSignal | undefined): Promise<Job> {
  let last: Job | undefined;
  for await (const job of jobEvents(subscribe, code, signal)) last = job;
  // The events end only after a terminal snapshot (or throw).
  if (last?.status !== "COMPLETED") throw ExportError.fromJob(last as Job);
  return last;
}

/** The error of a wait (waitFor, events) that `signal` aborted. */
function aborted(code: string, reason: unknown): ExportError {
  return new ExportError("ABORTED", `waiting for export ${code} aborted`, { cause: reason });
}
