/**
 * The BFF killed with SIGKILL under open streams and a new one started on the same
 * address, with the same session secret, in front of the same backend (the real
 * binaries). The `eventsource` npm client — raw, and inside the library in both modes —
 * must reconnect by itself, resume with Last-Event-ID and reach the terminal event the
 * backend holds, with nothing repeated or skipped. The Chromium side of the same fault
 * is in browser.test.ts.
 */
import { EventSource } from "eventsource";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExportClient } from "../src/index.js";
import type { FetchLike, Job } from "../src/index.js";
import { cookieFetch, countingEventSource } from "./fakes.js";
import type { NodeFetch } from "./fakes.js";
import { externalBffUrl, fetchFile, missingPrerequisites, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = externalBffUrl ? undefined : prerequisites("BFF restart tests (real backend + BFF)", missingPrerequisites());

/** Every BFF of the test signs sessions with it, so the new one knows the old one's cookies. */
const SESSION_SECRET = "bff-restart-test-secret-0123456789abcdef";
/** The `retry:` the BFF advertises: how soon clients try again after the kill. */
const RETRY_MS = 200;
const EXPORTS = 3;
const ROWS = 3000;
const DURATION_MS = 4000;

function isTerminal(job: Job): boolean {
  return job.status === "COMPLETED" || job.status === "FAILED" || job.status === "CANCELLED";
}

/** One raw `eventsource` EventSource on a per-job stream, with what it received and sent. */
class Watcher {
  readonly events: { id: string; job: Job; at: number }[] = [];
  /** Every request it made: its Last-Event-ID header (null when none) and when. */
  readonly requests: { lastEventId: string | null; at: number; refused?: boolean }[] = [];
  readonly underway: Promise<void>;
  /** Resolves when a request of its failed to connect: it found no BFF and will retry. */
  readonly refused: Promise<void>;
  readonly done: Promise<void>;
  readonly #source: EventSource;

  constructor(url: string, fetchImpl: NodeFetch) {
    let wasRefused!: () => void;
    this.refused = new Promise((resolve) => (wasRefused = resolve));
    const recording: NodeFetch = (input, init) => {
      const request: (typeof this.requests)[number] = { lastEventId: new Headers(init?.headers).get("Last-Event-ID"), at: Date.now() };
      this.requests.push(request);
      return fetchImpl(input, init).catch((error: unknown) => {
        request.refused = true;
        wasRefused();
        throw error;
      });
    };
    let started!: () => void;
    this.underway = new Promise((resolve) => (started = resolve));
    this.#source = new EventSource(url, { fetch: recording });
    this.done = new Promise<void>((resolve, reject) => {
      this.#source.onmessage = (message) => {
        const job = JSON.parse(message.data) as Job;
        this.events.push({ id: message.lastEventId, job, at: Date.now() });
        if (job.status === "IN_PROGRESS" && job.progress > 0) started();
        if (isTerminal(job)) {
          this.#source.close();
          resolve();
        }
      };
      this.#source.onerror = (error) => {
        // While CONNECTING the source retries by itself: that is the reconnect under test.
        if (this.#source.readyState === EventSource.CLOSED) {
          reject(new Error(`${url}: closed after ${this.events.length} events (${error.message ?? ""} ${error.code ?? ""})`));
        }
      };
    });
  }

  close(): void {
    this.#source.close();
  }
}

describe.skipIf(missing !== undefined || externalBffUrl !== undefined)("a BFF killed with SIGKILL and started again", () => {
  let servers: Servers;

  beforeAll(async () => {
    servers = await startServers({ env: { SESSION_SECRET, SSE_RETRY: `${RETRY_MS}ms`, WORKERS: "8" } });
  });

  afterAll(async () => {
    await servers?.stop();
  });

  it("the eventsource client reconnects, resumes by Last-Event-ID and reaches the same terminal events", async () => {
    const fetchImpl = cookieFetch();
    const perJobSources = countingEventSource(fetchImpl);
    const multiplexSources = countingEventSource(fetchImpl);
    const perJob = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: perJobSources.EventSource,
      mode: "per-job",
    });
    const multiplex = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: multiplexSources.EventSource,
      mode: "multiplex",
    });

    const codes: string[] = [];
    for (let i = 0; i < EXPORTS; i++) codes.push((await perJob.start({ rows: ROWS, durationMs: DURATION_MS })).code);
    // Per export: two raw EventSources, the library's per-job subscription and its
    // multiplexed one (all the exports share one /api/events EventSource).
    const watchers = new Map(
      codes.map((code) => [code, [0, 1].map(() => new Watcher(`${servers.bffUrl}/api/exports/${code}/events`, fetchImpl))]),
    );
    const perJobDone = codes.map((code) => perJob.waitFor(code, { signal: AbortSignal.timeout(45_000) }));
    const multiplexDone = codes.map((code) => multiplex.waitFor(code, { signal: AbortSignal.timeout(45_000) }));
    const all = [...watchers.values()].flat();
    try {
      await Promise.all(all.map((watcher) => watcher.underway));
      for (const watcher of all) expect(watcher.events.some((event) => isTerminal(event.job))).toBe(false);

      const killedAt = Date.now();
      await servers.killBff();
      // The new BFF starts once every raw client has found none and is retrying.
      await Promise.all(all.map((watcher) => watcher.refused));
      await servers.restartBff();
      const restartedAt = Date.now();
      await Promise.all(all.map((watcher) => watcher.done));
      const [perJobEnds, multiplexEnds] = await Promise.all([Promise.all(perJobDone), Promise.all(multiplexDone)]);

      let events = 0;
      let reconnectAttempts = 0;
      let refusedAttempts = 0;
      let recovered = 0; // the longest time from the kill to a watcher's first event after it
      for (const [i, code] of codes.entries()) {
        const truth = await perJob.get(code); // what the backend holds, through the new BFF
        expect(truth.status).toBe("COMPLETED");
        for (const watcher of watchers.get(code)!) {
          events += watcher.events.length;
          // ids are the seqs, strictly increasing across the reconnection; one terminal
          // event, the last, and it is the backend's final state.
          const seqs = watcher.events.map((event) => event.job.seq);
          expect(watcher.events.map((event) => event.id)).toEqual(seqs.map(String));
          for (let k = 1; k < seqs.length; k++) expect(seqs[k]).toBeGreaterThan(seqs[k - 1]!);
          expect(watcher.events.filter((event) => isTerminal(event.job))).toHaveLength(1);
          expect(watcher.events.at(-1)?.job).toEqual(truth);

          // It reconnected by itself, every time with the id of the last event it had.
          const [first, ...again] = watcher.requests;
          expect(first?.lastEventId).toBeNull();
          expect(again.length).toBeGreaterThanOrEqual(1);
          reconnectAttempts += again.length;
          refusedAttempts += again.filter((request) => request.refused).length;
          expect(again.at(-1)?.refused).toBeUndefined(); // the last one got through
          for (const request of again) {
            const had = watcher.events.filter((event) => event.at <= request.at).at(-1);
            expect(request.lastEventId).toBe(had?.id);
          }
          const after = watcher.events.find((event) => event.at >= restartedAt);
          expect(after, "no event after the new BFF started").toBeDefined();
          recovered = Math.max(recovered, after!.at - killedAt);
        }
        // The library, in both modes, ends on the same terminal event.
        expect(perJobEnds[i]).toEqual(truth);
        expect(multiplexEnds[i]).toEqual(truth);
        const { response, sha256 } = await fetchFile(fetchImpl, servers.bffUrl, truth);
        expect(response.status).toBe(200);
        expect(sha256).toBe(truth.file?.sha256);
      }
      // The library's EventSources reconnected themselves: none was constructed again.
      expect(perJobSources.constructed).toHaveLength(EXPORTS);
      expect(multiplexSources.constructed).toEqual([`${servers.bffUrl}/api/events`]);
      console.info(
        `BFF kill -9 (eventsource client): ${EXPORTS} exports, ${all.length} raw streams + ${EXPORTS} per-job and 1 multiplexed library streams; ` +
          `${events} raw events checked, lost 0; ${reconnectAttempts} reconnection requests (${refusedAttempts} refused while no BFF ran); ` +
          `new BFF healthy ${restartedAt - killedAt} ms after the kill; every raw stream had an event again within ${recovered} ms of the kill`,
      );
    } finally {
      for (const watcher of all) watcher.close();
    }
  }, 60_000);
});
