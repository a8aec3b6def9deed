import { isTerminalStatus } from "./types.js";
import type { Job } from "./types.js";

/**
 * Weight of the newest rate sample in the moving average: high enough to follow a job
 * that speeds up or slows down within a few snapshots, low enough that one late
 * snapshot (a batch flushed at once) does not make the estimate jump.
 */
const SMOOTHING = 0.3;

/**
 * Remaining time of one job from its progress rate: an exponentially weighted moving
 * average of rows per millisecond between successive snapshots, timed by their
 * `updatedAt` (the server's clock, so a late delivery does not skew it). Undefined until
 * two IN_PROGRESS snapshots, 0 at a terminal state.
 */
export class EtaEstimator {
  #last: { readonly rows: number; readonly at: number } | undefined;
  /** Smoothed rows per millisecond. */
  #rate: number | undefined;
  #etaMs: number | undefined;

  get etaMs(): number | undefined {
    return this.#etaMs;
  }

  /** Takes the next (newer) snapshot; returns the estimate, in ms from its `updatedAt`. */
  update(job: Job): number | undefined {
    if (isTerminalStatus(job.status)) return (this.#etaMs = 0);
    // Time spent PENDING (queued) says nothing of the generation's rate.
    if (job.status !== "IN_PROGRESS") return this.#etaMs;
    const at = Date.parse(job.updatedAt);
    if (Number.isNaN(at)) return this.#etaMs;
    const last = this.#last;
    this.#last = { rows: job.rowsDone, at };
    if (!last || job.rowsDone < last.rows) {
      // First point, or the job started over (a retried generation): a new baseline.
      this.#rate = undefined;
      return (this.#etaMs = undefined);
    }
    const elapsed = at - last.at;
    if (elapsed <= 0) {
      this.#last = last; // same instant: wait for a later point
      return this.#etaMs;
    }
    const sample = (job.rowsDone - last.rows) / elapsed;
    this.#rate = this.#rate === undefined ? sample : SMOOTHING * sample + (1 - SMOOTHING) * this.#rate;
    const remaining = Math.max(0, job.rowsTotal - job.rowsDone);
    this.#etaMs = this.#rate > 0 ? Math.round(remaining / this.#rate) : undefined;
    return this.#etaMs;
  }
}
