/**
 * The scenario table (scenario-table.ts) against the real BFF and backend binaries
 * (SCENARIOS=on, test/servers.ts), through the client library with the `eventsource`
 * package: the same rows and assertions as scenarios-fake.test.ts.
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import { createExportClient } from "../src/index.js";
import type { FetchLike } from "../src/index.js";
import { cookieFetch, countingEventSource, recordingStreams } from "./fakes.js";
import { checkScenario, record, SCENARIOS } from "./scenario-table.js";
import type { Driver, StreamRequest } from "./scenario-table.js";
import { missingPrerequisites, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("scenario table against the real stack (backend + BFF)", missingPrerequisites());

describe.skipIf(missing !== undefined)("the scenario table against the real BFF and backend", () => {
  let servers: Servers;

  beforeAll(async () => {
    servers = await startServers();
  });

  afterAll(async () => {
    await servers?.stop();
  });

  /** A fresh session per row. */
  function driver(): Driver {
    const fetchImpl = cookieFetch();
    const streams: StreamRequest[] = [];
    const client = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: countingEventSource(recordingStreams(fetchImpl, streams)).EventSource,
    });
    return {
      client,
      async until(done, what, timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        while (!done()) {
          if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      },
      async fileStatus(job) {
        const response = await fetchImpl(`${servers.bffUrl}${job.file?.url ?? ""}`);
        await response.arrayBuffer();
        return response.status;
      },
      streams: () => streams,
    };
  }

  it.each(SCENARIOS.map((row) => [row.name, row] as const))("%s", async (_name, row) => {
    checkScenario(row, await record(driver(), row));
  });
});
