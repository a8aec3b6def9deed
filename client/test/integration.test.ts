/**
 * The client against the real backend and BFF binaries, in Node (the `eventsource`
 * package stands in for the browser's EventSource).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExportClient, ExportError } from "../src/index.js";
import type { ExportClient, ExportEvent, FetchLike, Job } from "../src/index.js";
import { cookieFetch, countingEventSource } from "./fakes.js";
import type { CountingEventSource, NodeFetch } from "./fakes.js";
import { externalBffUrl, fetchFile, missingPrerequisites, prerequisites, replicas, scaledOut, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites("integration tests (real backend + BFF)", missingPrerequisites());

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

  /**
   * The backends' own count of the job streams they have served (Prometheus): per-job
   * event streams plus subscriptions started on the BFF's multiplexed stream, summed over
   * the replicas when scaled out. Undefined against an external stack, whose backend is
   * not reachable.
   */
  async function backendStreamsOpened(): Promise<number | undefined> {
    if (servers.backendUrls.length === 0) return undefined;
    const counts = await Promise.all(servers.backendUrls.map((url) => backendStreamsOpenedOn(url)));
    return counts.reduce((a, b) => a + b, 0);
  }

  async function backendStreamsOpenedOn(backendUrl: string): Promise<number> {
    const text = await (await fetch(`${backendUrl}/metrics`)).text();
    const counter = (name: string): number => {
      const match = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
      if (!match?.[1]) throw new Error(`no ${name} in the backend's metrics:\n${text}`);
      return Number(match[1]);
    };
    return counter("exportstream_backend_event_streams_opened_total") + counter("exportstream_backend_mux_subscribed_total");
  }

  /** A fresh session (cookie jar) and client per test. */
  function newClient(mode: "per-job" | "multiplex" = "per-job"): ExportClient {
    fetchImpl = cookieFetch();
    eventSources = countingEventSource(fetchImpl);
    client = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: eventSources.EventSource,
      mode,
    });
    return client;
  }

  /** Another client in the same session (same cookie jar), with its own EventSources. */
  function sameSessionClient(mode: "per-job" | "multiplex" = "per-job"): { client: ExportClient; eventSources: CountingEventSource } {
    const own = countingEventSource(fetchImpl);
    return {
      client: createExportClient({ baseUrl: servers.bffUrl, fetch: fetchImpl as FetchLike, EventSource: own.EventSource, mode }),
      eventSources: own,
    };
  }

  async function sha256Of(done: Job): Promise<string> {
    const { response, sha256 } = await fetchFile(fetchImpl, servers.bffUrl, done);
    expect(response.status).toBe(200);
    return sha256;
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
    expect(client.stats().subscribed).toEqual([]);
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
    // Measured where it matters: the backend served the job once for all three.
    const backendStreamsAfter = await backendStreamsOpened();
    if (backendStreamsBefore !== undefined && backendStreamsAfter !== undefined) {
      expect(backendStreamsAfter - backendStreamsBefore).toBe(1);
    }
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
    expect(client.stats().subscribed).toEqual([]);
  });

  it("downloads a file whose SHA-256 is the job's file.sha256", async () => {
    newClient();
    const { code } = await client.start({ rows: 2000, durationMs: 1500, filename: "report.csv" });
    const done = await client.waitFor(code);

    const { response, bytes, sha256 } = await fetchFile(fetchImpl, servers.bffUrl, done);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-disposition")).toMatch(/^attachment;/);

    expect(bytes.length).toBe(done.file?.size);
    expect(sha256).toBe(done.file?.sha256);
  });

  it("rejects waitFor with an ExportError (status FAILED) when the generation fails at 50%", async () => {
    newClient();
    const { code } = await client.start({ rows: 2000, durationMs: 1500, failAt: 50 });

    const error = await client.waitFor(code).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ExportError);
    const exportError = error as ExportError;
    expect(exportError.code).toBe("GENERATION_FAILED");
    expect(exportError.jobStatus).toBe("FAILED");
    expect(exportError.job?.status).toBe("FAILED");
    expect(exportError.job?.error?.code).toBe(exportError.code);
    expect(exportError.job?.file).toBeUndefined();
  });

  it("gets NOT_FOUND (HTTP 404) for an unknown code", async () => {
    newClient();
    const error = await client.get("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
  });

  it("gets INVALID_CODE (HTTP 400) for a code that is not a UUID", async () => {
    newClient();
    await expect(client.get("not-a-uuid")).rejects.toMatchObject({ code: "INVALID_CODE", httpStatus: 400 });
  });

  it("gets VALIDATION_FAILED (HTTP 422) for an invalid request", async () => {
    newClient();
    await expect(client.start({ rows: -1, durationMs: 1500 })).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
      httpStatus: 422,
    });
  });

  it("fails a subscription to an unknown code with an ExportError and closes its stream", async () => {
    newClient();
    const error = await client.waitFor("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "NOT_FOUND", httpStatus: 404, jobStatus: "ERROR" });
    expect(client.stats().subscribed).toEqual([]);
  });

  it("cancels a running export: DELETE answers the CANCELLED job, waitFor rejects CANCELLED; a second DELETE deletes it (204)", async () => {
    newClient();
    const { code } = await client.start({ rows: 100_000, durationMs: 20_000 });
    const waiting = client.waitFor(code).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 300));

    const cancelled = await client.cancel(code);

    expect(cancelled).toMatchObject({ code, status: "CANCELLED" });
    const error = await waiting;
    expect(error).toBeInstanceOf(ExportError);
    expect(error).toMatchObject({ code: "CANCELLED", status: "CANCELLED" });
    await expect(client.cancel(code)).resolves.toBeUndefined();
    await expect(client.get(code)).rejects.toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
  });

  it("lists this session's exports newest first, and another session sees none of them (404)", async () => {
    newClient();
    const first = await client.start({ rows: 100, durationMs: 0 });
    const second = await client.start({ rows: 100, durationMs: 0 });
    const mine = client;

    const listed = await mine.list();
    expect(listed.map((job) => job.code)).toEqual([second.code, first.code]);

    const other = newClient();
    await expect(other.list()).resolves.toEqual([]);
    await expect(other.get(first.code)).rejects.toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
    const error = await other.waitFor(first.code).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExportError);
    await expect(mine.list()).resolves.toHaveLength(2);
  });

  it("two clients of one session follow one export, each with its own single EventSource", async () => {
    newClient();
    const second = sameSessionClient();
    const { code } = await client.start({ rows: 2000, durationMs: 1000 });

    const [a, b] = await Promise.all([client.waitFor(code), second.client.waitFor(code)]);

    expect(a).toEqual(b);
    expect(eventSources.constructed).toHaveLength(1);
    expect(second.eventSources.constructed).toHaveLength(1);
  });

  it("carries the BFF's refusal of a foreign Origin (403 FORBIDDEN_ORIGIN)", async () => {
    const jar = cookieFetch();
    const foreign: FetchLike = (url, init) =>
      jar(url, { ...init, headers: { ...init.headers, Origin: "https://evil.example" } }) as ReturnType<FetchLike>;
    const rogue = createExportClient({ baseUrl: servers.bffUrl, fetch: foreign });
    await expect(rogue.start({ rows: 1, durationMs: 0 })).rejects.toMatchObject({ code: "FORBIDDEN_ORIGIN", httpStatus: 403 });
  });

  describe("multiplex mode", () => {
    it("follows three exports over one /api/events EventSource up to COMPLETED, files intact", async () => {
      newClient("multiplex");
      const started = await Promise.all([1000, 2000, 3000].map((rows) => client.start({ rows, durationMs: 1000 })));
      const progress = new Map<string, number[]>();
      for (const { code } of started) {
        client.subscribe(code, (event) => {
          if (event.type === "snapshot") progress.set(code, [...(progress.get(code) ?? []), event.job.seq]);
        });
      }

      const done = await Promise.all(started.map(({ code }) => client.waitFor(code, { signal: AbortSignal.timeout(15_000) })));

      expect(eventSources.constructed).toEqual([`${servers.bffUrl}/api/events`]);
      for (const job of done) {
        expect(job.status).toBe("COMPLETED");
        expect(job.file?.expiresAt).toEqual(expect.any(String));
        expect(await sha256Of(job)).toBe(job.file?.sha256);
        const seqs = progress.get(job.code) ?? [];
        expect(seqs.at(-1)).toBe(job.seq);
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
      }
      await new Promise((r) => setTimeout(r, 0));
      expect(client.stats().connections).toBe(0);
    });

    it("rejects waitFor with GENERATION_FAILED for fail-at, and with NOT_FOUND for another session's code", async () => {
      newClient("multiplex");
      const { code } = await client.start({ rows: 2000, durationMs: 1000, failAt: 30 });
      await expect(client.waitFor(code)).rejects.toMatchObject({ name: "ExportError", code: "GENERATION_FAILED", status: "FAILED" });

      const stranger = newClient("multiplex");
      await expect(stranger.waitFor(code)).rejects.toMatchObject({ name: "ExportError", code: "NOT_FOUND", httpStatus: 404 });
    });

    it("gives a subscriber of a job finished before it subscribed the terminal snapshot at once", async () => {
      newClient("multiplex");
      const { code } = await client.start({ rows: 500, durationMs: 200 });
      await client.waitFor(code);
      const again = await client.waitFor(code);
      expect(again.status).toBe("COMPLETED");
    });

    it("cancels over the multiplexed stream: the subscriber gets CANCELLED", async () => {
      newClient("multiplex");
      const { code } = await client.start({ rows: 100_000, durationMs: 20_000 });
      const waiting = client.waitFor(code).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
      await client.cancel(code);
      expect(await waiting).toMatchObject({ code: "CANCELLED", status: "CANCELLED" });
      expect(eventSources.constructed).toEqual([`${servers.bffUrl}/api/events`]);
    });
  });

  // Last, so it sees the whole suite's traffic: proof that the run above was scaled out.
  it.runIf(scaledOut)(`scaled out: every BFF and every backend took part (${replicas} of each on one Redis)`, async () => {
    const routed = servers.routed();
    for (let bff = 0; bff < replicas; bff++) {
      const mine = routed.filter((r) => r.bff === bff);
      expect(mine.filter((r) => r.method === "POST").length, `creates through BFF ${bff + 1}`).toBeGreaterThan(0);
      expect(mine.filter((r) => r.path.endsWith("/events")).length, `event streams through BFF ${bff + 1}`).toBeGreaterThan(0);
      expect(mine.filter((r) => r.path.endsWith("/file")).length, `downloads through BFF ${bff + 1}`).toBeGreaterThan(0);
    }
    for (const url of servers.backendUrls) expect(await backendStreamsOpenedOn(url), `streams served by ${url}`).toBeGreaterThan(0);
  });
});

// Needs its own BFF with a 2 s lifetime: not against an external stack (compose).
describe.skipIf(missing !== undefined || scaledOut || externalBffUrl !== undefined)("an expired session through the real BFF (SESSION_LIFETIME=2s)", () => {
  let servers: Servers;

  beforeAll(async () => {
    servers = await startServers({ env: { SESSION_LIFETIME: "2s" } });
  });

  afterAll(async () => {
    await servers?.stop();
  });

  it("fails calls and new streams with SESSION_EXPIRED, and renewSession() starts a new session", async () => {
    const fetchImpl = cookieFetch();
    const client = createExportClient({
      baseUrl: servers.bffUrl,
      fetch: fetchImpl as FetchLike,
      EventSource: countingEventSource(fetchImpl).EventSource,
    });
    const running = await client.start({ rows: 1000, durationMs: 60000 });
    // The lifetime passing, with no request that would refresh the cookie, is what is
    // under test: nothing to wait on but the clock.
    await new Promise((resolve) => setTimeout(resolve, 2200));

    await expect(client.get(running.code)).rejects.toMatchObject({ code: "SESSION_EXPIRED", httpStatus: 401 });
    const streamError = new Promise<ExportError>((resolve) => {
      client.subscribe(running.code, (event: ExportEvent) => {
        if (event.type === "error") resolve(event.error);
      });
    });
    await expect(streamError).resolves.toMatchObject({ name: "ExportError", code: "SESSION_EXPIRED", httpStatus: 401 });

    await client.renewSession();
    await expect(client.list()).resolves.toEqual([]);
    await expect(client.get(running.code)).rejects.toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
  });
});
