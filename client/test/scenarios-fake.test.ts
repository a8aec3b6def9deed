/**
 * The scenario table (scenario-table.ts) against the testing kit's fake server, under
 * fake timers: the same rows and assertions as scenarios-real.test.ts.
 */
import { afterEach, beforeEach, describe, it, vi } from "vitest";
import { createFakeExportServer } from "../src/testing.js";
import type { FakeExportServer } from "../src/testing.js";
import { checkScenario, record, SCENARIOS } from "./scenario-table.js";
import type { Driver } from "./scenario-table.js";

describe("the scenario table against the fake server (fake timers)", () => {
  let server: FakeExportServer;

  beforeEach(() => {
    vi.useFakeTimers();
    server = createFakeExportServer();
  });

  afterEach(() => {
    server.close();
    vi.useRealTimers();
  });

  function driver(): Driver {
    return {
      client: server.client,
      async until(done, what, timeoutMs) {
        // Fake time moves only when told: in 10 ms steps, so the listener sees each event.
        for (let waited = 0; !done(); waited += 10) {
          if (waited > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms of fake time`);
          await vi.advanceTimersByTimeAsync(10);
        }
      },
      async fileStatus(job) {
        return (await server.fetch(job.file?.url ?? "", { method: "GET", headers: {} })).status;
      },
      streams: () => server.streams,
    };
  }

  it.each(SCENARIOS.map((row) => [row.name, row] as const))("%s", async (_name, row) => {
    checkScenario(row, await record(driver(), row));
  });

});
