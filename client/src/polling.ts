/**
 * The fallback's snapshot GETs (fallback.ts), a chunk of its own: loaded when a stream
 * first gives way to polling.
 */
import type { ExportError } from "./errors.js";
import type { Poll, PollerSink, Settings } from "./fallback.js";
import type { Job } from "./types.js";

/** Starts polling; returns the function that stops it. */
export function poll(get: Poll, settings: Settings, sink: PollerSink): () => void {
  const poller = new Poller(get, settings, sink);
  return () => poller.stop();
}

/**
 * Snapshot GETs: one at once, then every `pollMs`, ×1.5 up to `maxPollMs` while nothing
 * changes, back to `pollMs` on a change. A definite answer ends it: 401 (the session
 * expired: the GET's answer is what a stream's probe would find), 403, 404, 410.
 */
class Poller {
  readonly #poll: Poll;
  readonly #settings: Settings;
  readonly #sink: PollerSink;
  readonly #abort = new AbortController();
  readonly #seen = new Map<string, number>();
  #delay: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(poll: Poll, settings: Settings, sink: PollerSink) {
    this.#poll = poll;
    this.#settings = settings;
    this.#sink = sink;
    this.#delay = settings.pollMs;
    void this.#tick();
  }

  stop(): void {
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #tick(): Promise<void> {
    const { signal } = this.#abort;
    let jobs: readonly Job[];
    try {
      jobs = await this.#poll(signal);
    } catch (error) {
      if (signal.aborted) return;
      if (isDefinite(error)) {
        this.stop();
        this.#sink.fatal(error);
        return;
      }
      this.#sink.state("connecting");
      this.#next(false);
      return;
    }
    if (signal.aborted) return;
    const changed = jobs.some((job) => job.seq > (this.#seen.get(job.code) ?? -1));
    for (const job of jobs) this.#seen.set(job.code, Math.max(job.seq, this.#seen.get(job.code) ?? -1));
    this.#sink.state("open");
    this.#sink.jobs(jobs);
    if (!signal.aborted) this.#next(changed);
  }

  #next(changed: boolean): void {
    this.#delay = changed ? this.#settings.pollMs : Math.min(this.#delay * 1.5, this.#settings.maxPollMs);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#tick();
    }, this.#delay);
  }
}

/** An ExportError with a definite status (read, not `instanceof`: this chunk imports no code). */
function isDefinite(error: unknown): error is ExportError {
  const status = (error as { httpStatus?: unknown } | undefined)?.httpStatus;
  return status === 401 || status === 403 || status === 404 || status === 410;
}
