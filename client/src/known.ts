import { guard } from "./subscription.js";
import type { Unsubscribe } from "./subscription.js";
import type { Job } from "./types.js";

/** What {@link KnownJobs.observe} reports: any job the client learns about. */
export type JobObservation =
  | { readonly type: "snapshot"; readonly job: Job }
  | { readonly type: "removed"; readonly code: string };

/** How many codes' latest snapshots are kept for late subscribers and observers. */
const KNOWN_JOBS_LIMIT = 1000;

/**
 * The latest snapshot of every code the client learnt of, from any source (start, get,
 * list, cancel, every stream), bounded by {@link KNOWN_JOBS_LIMIT} with the least
 * recently changed dropped first; and who wants to hear of each change.
 */
export class KnownJobs {
  /** Oldest change first: a newer snapshot moves its code to the end. */
  readonly #jobs = new Map<string, Job>();
  readonly #observers = new Set<(observation: JobObservation) => void>();

  get(code: string): Job | undefined {
    return this.#jobs.get(code);
  }

  /** Stores a snapshot if it is newer than the one known and tells observers; false if not newer. */
  learn(job: Job): boolean {
    const known = this.#jobs.get(job.code);
    if (known && job.seq <= known.seq) return false;
    this.#jobs.delete(job.code);
    this.#jobs.set(job.code, job);
    if (this.#jobs.size > KNOWN_JOBS_LIMIT) {
      const oldest = this.#jobs.keys().next().value;
      if (oldest !== undefined) this.#jobs.delete(oldest);
    }
    this.#notify({ type: "snapshot", job });
    return true;
  }

  /** Forgets a code the server deleted (or said is gone); observers hear `removed`. */
  forget(code: string): void {
    if (!this.#jobs.delete(code)) return;
    this.#notify({ type: "removed", code });
  }

  /** Calls `observer` with every newer snapshot of any job, and with removals. */
  observe(observer: (observation: JobObservation) => void): Unsubscribe {
    // Wrapped, so the same function observing twice is two observers.
    const wrapped = (observation: JobObservation): void => observer(observation);
    this.#observers.add(wrapped);
    return () => {
      this.#observers.delete(wrapped);
    };
  }

  #notify(observation: JobObservation): void {
    for (const observer of [...this.#observers]) guard(() => observer(observation));
  }
}
