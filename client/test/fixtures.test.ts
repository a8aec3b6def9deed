import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createExportClient, ExportError, isTerminalStatus } from "../src/index.js";
import type { ExportEvent } from "../src/index.js";
import { FakeEventSource, fakeClient, fakeFetch, flush, wire } from "./fakes.js";

// docs/fixtures is shared with the Go types and docs/openapi.yaml; see `wire` in fakes.ts.
// The compile-time half of this check is fixtures.test-d.ts.

describe("docs/fixtures", () => {
  it("are all loaded by fakes.ts, one per job status", () => {
    const files = readdirSync(new URL("../../docs/fixtures/", import.meta.url)).filter((f) => f.endsWith(".json"));
    expect(files.sort()).toEqual([...Object.keys(wire.jobs), "error-event.json"].sort());
    expect(Object.values(wire.jobs).map((job) => job.status).sort()).toEqual(
      ["CANCELLED", "COMPLETED", "FAILED", "IN_PROGRESS", "PENDING"],
    );
  });

  it.each(Object.entries(wire.jobs))("%s comes out of an event stream unchanged", async (_, fixture) => {
    const client = fakeClient();
    const events: ExportEvent[] = [];
    client.subscribe(fixture.code, (event) => events.push(event));
    FakeEventSource.instances[0]!.emitRaw(JSON.stringify(fixture));
    await flush();

    // One snapshot is no rate: no estimate until the end (0).
    expect(events).toEqual([isTerminalStatus(fixture.status) ? { type: "snapshot", job: fixture, etaMs: 0 } : { type: "snapshot", job: fixture }]);
    // A terminal job ends its stream; the others keep it open.
    expect(client.stats().subscribed).toEqual(isTerminalStatus(fixture.status) ? [] : [fixture.code]);
  });

  it.each(Object.entries(wire.jobs))("%s is returned by get() unchanged", async (_, fixture) => {
    const { fetch } = fakeFetch(200, fixture);
    await expect(createExportClient({ fetch }).get(fixture.code)).resolves.toEqual(fixture);
  });

  it("error-event.json ends the stream with an ExportError carrying its code", async () => {
    const client = fakeClient();
    const events: ExportEvent[] = [];
    client.subscribe(wire.errorEvent.code, (event) => events.push(event));
    FakeEventSource.instances[0]!.emitRaw(JSON.stringify(wire.errorEvent));
    await flush();

    expect(events).toHaveLength(1);
    const [event] = events;
    expect(event?.type).toBe("error");
    if (event?.type !== "error") return;
    expect(event.error).toBeInstanceOf(ExportError);
    expect(event.error).toMatchObject({ code: wire.errorEvent.error.code, jobStatus: "ERROR" });
    expect(event.error.message).toContain(wire.errorEvent.error.message);
    expect(client.stats().subscribed).toEqual([]);
  });
});
