/**
 * The dropStreamAt scenario through the real BFF and backend, read by the client library
 * with the `eventsource` package: the stream is cut once, right after the first snapshot
 * at or past the percent; the EventSource resumes with Last-Event-ID once, and the
 * listener sees every seq once, up to COMPLETED.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExportClient } from "../src/index.js";
import type { ConnectionState, FetchLike, Job } from "../src/index.js";
import { cookieFetch, countingEventSource, recordingStreams } from "./fakes.js";
import type { StreamRequest } from "./scenario-table.js";
import { externalBffUrl, missingPrerequisites, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("dropStreamAt through the real BFF", missingPrerequisites());

// Against an external stack (the compose profile) the backend's SCENARIOS setting is the
// stack's own; the suite runs where it starts its servers.
describe.skipIf(missing !== undefined || externalBffUrl !== undefined)("dropStreamAt through the real BFF", () => {
  let servers: Servers;
  beforeAll(async () => {
    servers = await startServers();
  });
  afterAll(async () => {
    await servers?.stop();
  });

  for (const mode of ["per-job", "multiplex"] as const) {
    it(`${mode}: one cut right after 40 %, one reconnect with Last-Event-ID, every seq once, COMPLETED`, async () => {
      const requests: StreamRequest[] = [];
      const jar = cookieFetch();
      const streams = countingEventSource(recordingStreams(jar, requests));
      const client = createExportClient({ baseUrl: servers.bffUrl, fetch: jar as FetchLike, EventSource: streams.EventSource, mode });
      const job = await client.start({ rows: 1000, durationMs: 2000, dropStreamAt: 40 });
      const seen: Job[] = [];
      const states: ConnectionState[] = [];
      const done = new Promise<Job>((resolve, reject) => {
        client.subscribe(
          job.code,
          (event) => {
            if (event.type === "error") reject(event.error);
            else {
              seen.push(event.job);
              if (event.job.status === "COMPLETED") resolve(event.job);
            }
          },
          { onConnection: (state) => states.push(state) },
        );
      });
      const completed = await done;

      expect(completed.status).toBe("COMPLETED");
      const seqs = seen.map((j) => j.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      // One EventSource, which reconnected once, resuming after the first snapshot past 40 %.
      expect(streams.constructed).toHaveLength(1);
      expect(requests).toHaveLength(2);
      const cut = seen.find((j) => j.progress >= 40);
      expect(cut?.status).toBe("IN_PROGRESS");
      const resumedFrom = mode === "per-job" ? String(cut?.seq) : `${job.code}:${cut?.seq}`;
      expect(requests[1]?.lastEventId).toBe(resumedFrom);
      expect(states.filter((s) => s === "connecting").length).toBeGreaterThanOrEqual(1);
      expect(client.stats().transport).toBeUndefined(); // the subscription ended with COMPLETED
    });
  }
});
