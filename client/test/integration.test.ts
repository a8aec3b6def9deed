/**
 * The client against the real backend and BFF binaries, in Node (the `eventsource`
 * package stands in for the browser's EventSource).
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExportClient, ExportError } from "../src/index.js";
import type { ExportClient, ExportEvent, FetchLike, Job } from "../src/index.js";
import { cookieFetch, countingEventSource } from "./node-env.js";
import type { CountingEventSource, NodeFetch } from "./node-env.js";
import { inCI, missingPrerequisites, reportMissing, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = reportMissing("integration tests (real backend + BFF)", missingPrerequisites());

if (missing !== undefined) {
  describe("integration prerequisites", () => {
    if (inCI) it("are present (CI=true makes a missing one a failure)", () => expect.fail(missing));
    else it.skip(`are missing, so the suite is skipped: ${missing}`, () => {});
  });
}

describe.skipIf(missing !== undefined)("client against the real BFF", () => {
  let servers: Servers;
  let fetchImpl: NodeFetch;
  let eventSources: CountingEventSource;
  let client: ExportClient;

  beforeAll(async () => {
    servers = await startServers();
  });

  afterAll(async () => {
    await servers?.stop();
  });

  /** The backend's own count of the event streams it has served (Prometheus). */
  async function backendStreamsOpened(): Promise<number> {
    const text = await (await fetch(`${servers.backendUrl}/metrics`)).text();
    const match = /^exportstream_backend_event_streams_opened_total (\d+)$/m.exec(text);
    if (!match?.[1]) throw new Error(`no stream counter in the backend's metrics:\n${text}`);
    return Number(match[1]);
  }

  /** A fresh session (cookie jar) and client per test. */
  function newClient(): ExportClient {
    fetchImpl = cookieFetch();
    eventSources = countingEventSource(fetchImpl);
    client = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: eventSources.EventSource,
    });
    return client;
  }

  it("starts an export and waitFor resolves COMPLETED with its file", async () => {
    newClient();
    const started = await client.start({ rows: 2000, durationMs: 1500 });
    expect(started.code).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(["PENDING", "IN_PROGRESS"]).toContain(started.status);
    expect(started.rowsTotal).toBe(2000);

    const done = await client.waitFor(started.code);

    expect(done).toMatchObject({ code: started.code, status: "COMPLETED", progress: 100, rowsDone: 2000, rowsTotal: 2000 });
    expect(done.seq).toBeGreaterThan(started.seq);
    expect(done.file).toMatchObject({ contentType: expect.stringContaining("text/csv"), url: `/api/exports/${started.code}/file` });
    expect(done.file?.name).toMatch(/\.csv$/);
    expect(done.file?.size).toBeGreaterThan(0);
    expect(done.file?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(client.openStreams()).toEqual([]);
  });

  it("shares one EventSource among three subscribers, who all see the same increasing sequence up to COMPLETED", async () => {
    newClient();
    const backendStreamsBefore = await backendStreamsOpened();
    const { code } = await client.start({ rows: 2000, durationMs: 1500 });
    const seen: ExportEvent[][] = [[], [], []];
    const finished = seen.map(
      (events) =>
        new Promise<void>((resolveDone) => {
          client.subscribe(code, (event) => {
            events.push(event);
            if (event.type === "error" || event.job.status === "COMPLETED") resolveDone();
          });
        }),
    );
    await Promise.all(finished);

    expect(eventSources.constructed).toEqual([`${servers.bffUrl}/api/exports/${code}/events`]);
    // Measured where it matters: the backend served one event stream for all three.
    expect((await backendStreamsOpened()) - backendStreamsBefore).toBe(1);
    const sequences = seen.map((events) => events.map((event) => (event.type === "snapshot" ? event.job : event.error)));
    for (const events of sequences) {
      expect(events.every((event) => !(event instanceof ExportError))).toBe(true);
      const jobs = events as Job[];
      expect(jobs.at(-1)?.status).toBe("COMPLETED");
      const seqs = jobs.map((job) => job.seq);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    }
    expect(sequences[1]).toEqual(sequences[0]);
    expect(sequences[2]).toEqual(sequences[0]);
    expect(client.openStreams()).toEqual([]);
  });

  it("downloads a file whose SHA-256 is the job's file.sha256", async () => {
    newClient();
    const { code } = await client.start({ rows: 2000, durationMs: 1500, filename: "report.csv" });
    const done = await client.waitFor(code);

    const response = await fetchImpl(client.fileUrl(done));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-disposition")).toMatch(/^attachment;/);
    const bytes = Buffer.from(await response.arrayBuffer());

    expect(bytes.length).toBe(done.file?.size);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(done.file?.sha256);
  });

  it("rejects waitFor with an ExportError (status FAILED) when the generation fails at 50%", async () => {
    newClient();
    const { code } = await client.start({ rows: 2000, durationMs: 1500, failAt: 50 });

    const error = await client.waitFor(code).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ExportError);
    const exportError = error as ExportError;
    expect(exportError.status).toBe("FAILED");
    expect(exportError.job?.status).toBe("FAILED");
    expect(exportError.job?.error?.code).toBe(exportError.code);
    expect(exportError.job?.file).toBeUndefined();
  });

  it("gets NOT_FOUND (HTTP 404) for an unknown code", async () => {
    newClient();
    const error = await client.get("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("gets INVALID_CODE (HTTP 400) for a code that is not a UUID", async () => {
    newClient();
    await expect(client.get("not-a-uuid")).rejects.toMatchObject({ code: "INVALID_CODE", status: 400 });
  });

  it("gets VALIDATION_FAILED (HTTP 422) for an invalid request", async () => {
    newClient();
    await expect(client.start({ rows: -1, durationMs: 1500 })).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
      status: 422,
    });
  });

  it("fails a subscription to an unknown code with an ExportError and closes its stream", async () => {
    newClient();
    const error = await client.waitFor("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect((error as ExportError).status).toBe("ERROR");
    expect(client.openStreams()).toEqual([]);
  });
});
