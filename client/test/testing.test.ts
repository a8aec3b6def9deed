/**
 * The testing kit's fake server beyond the scenario table: every change seen with seq up
 * by one, the same request giving the same timeline, the server's answers to bad
 * requests, downloads recorded, the multiplexed stream, the relay fault, close().
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ExportError } from "../src/index.js";
import type { ConnectionState, ExportEvent, ExportRequest, Job } from "../src/index.js";
import { createFakeExportServer } from "../src/testing.js";
import type { FakeExportServer, FakeExportServerOptions } from "../src/testing.js";

let server: FakeExportServer;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  server.close();
  vi.useRealTimers();
});

/** Starts `request` on a new server and records every event of it for `ms` of fake time. */
async function run(request: ExportRequest, ms: number, options: FakeExportServerOptions = {}): Promise<ExportEvent[]> {
  server = createFakeExportServer(options);
  const { code } = await server.client.start(request);
  const events: ExportEvent[] = [];
  server.client.subscribe(code, (event) => events.push(event));
  await vi.advanceTimersByTimeAsync(ms);
  return events;
}

const jobs = (events: ExportEvent[]): Job[] => events.flatMap((event) => (event.type === "snapshot" ? [event.job] : []));

describe("the fake server's timelines", () => {
  it("delivers every change, seq up by one each, dated by the fake clock", async () => {
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z"));
    const seen = jobs(await run({ rows: 1000, durationMs: 1000, startDelayMs: 300 }, 2000));
    expect(seen.map((job) => job.seq)).toEqual(seen.map((_, i) => i + 1));
    expect(seen.map((job) => job.status)).toEqual(["PENDING", "IN_PROGRESS", ...Array<string>(10).fill("IN_PROGRESS"), "COMPLETED"]);
    expect(seen[1]?.updatedAt).toBe("2030-01-01T00:00:00.300Z");
    expect(seen.at(-1)?.updatedAt).toBe("2030-01-01T00:00:01.300Z");
    expect(seen.at(-1)?.file?.expiresAt).toBe("2030-01-01T01:00:01.300Z");
  });

  it("gives the same request the same sequence of states", async () => {
    const request = { rows: 5000, rowsPerSecond: 2500, stallAt: 30, stallMs: 700, failAt: 80 };
    const strip = (events: ExportEvent[]) => jobs(events).map(({ status, progress, rowsDone, seq, error }) => ({ status, progress, rowsDone, seq, error }));
    const first = strip(await run(request, 5000));
    server.close();
    expect(strip(await run(request, 5000))).toEqual(first);
    expect(first.at(-1)).toMatchObject({ status: "FAILED", progress: 80, error: { code: "GENERATION_FAILED" } });
  });

  it("merges the scripted scenario over each request and keeps what it took", async () => {
    const seen = jobs(await run({ rows: 100, durationMs: 5000 }, 1000, { scenario: { durationMs: 500, failAt: 50, errorCode: "NO_QUOTA" } }));
    expect(seen.at(-1)?.error?.code).toBe("NO_QUOTA");
    expect(server.requests).toEqual([{ rows: 100, durationMs: 500, failAt: 50, errorCode: "NO_QUOTA" }]);
    server.script(undefined);
    const { code } = await server.client.start({ rows: 100 });
    await vi.advanceTimersByTimeAsync(0);
    expect((await server.client.get(code)).status).toBe("COMPLETED");
  });
});

describe("the fake server's answers", () => {
  it("refuses what the backend refuses, with its codes", async () => {
    server = createFakeExportServer({ scenarios: false });
    const refused = (request: object) => server.client.start(request as ExportRequest).catch((error: ExportError) => [error.httpStatus, error.code]);
    expect(await refused({ rows: 0 })).toEqual([422, "VALIDATION_FAILED"]);
    expect(await refused({ rows: 10, durationMs: 10, rowsPerSecond: 5 })).toEqual([400, "SCENARIOS_DISABLED"]);
    expect(await refused({ rows: 10, dropStreamAt: 40 })).toEqual([400, "SCENARIOS_DISABLED"]);
    expect(await refused({ rows: 10, colour: "red" })).toEqual([400, "INVALID_JSON"]);
    server = createFakeExportServer();
    expect(await refused({ rows: 10, failAt: 100 })).toEqual([422, "VALIDATION_FAILED"]);
    expect(await refused({ rows: 10, errorCode: "X" })).toEqual([422, "VALIDATION_FAILED"]);
    expect(await refused({ rows: 10, stallAt: 5 })).toEqual([422, "VALIDATION_FAILED"]);
    expect(await refused({ rows: 10, dropStreamAt: 100 })).toEqual([422, "VALIDATION_FAILED"]);
    expect(await refused({ rows: 10, durationMs: 10, rowsPerSecond: 5 })).toEqual([422, "VALIDATION_FAILED"]);
    await expect(server.client.get("00000000-0000-4000-8000-00000000ffff")).rejects.toMatchObject({ code: "NOT_FOUND", httpStatus: 404 });
  });

  it("records downloads instead of clicking; downloadOnce downloads once per export", async () => {
    server = createFakeExportServer();
    const running = await server.client.start({ rows: 10, durationMs: 1000, filename: "q3/report" });
    expect(() => server.client.download(running)).toThrow(expect.objectContaining({ code: "NOT_READY" }));
    await vi.advanceTimersByTimeAsync(1000);
    const done = await server.client.get(running.code);
    expect(await server.client.downloadOnce(done)).toBe(true);
    expect(await server.client.downloadOnce(done)).toBe(false);
    server.client.download(done);
    const url = `/api/exports/${done.code}/file`;
    expect(server.downloads).toEqual([{ code: done.code, name: "q3_report.csv", url, once: true }, { code: done.code, name: "q3_report.csv", url, once: false }]);
  });

  it("cancels a running export, deletes a finished one, lists newest first", async () => {
    server = createFakeExportServer();
    const a = await server.client.start({ rows: 10, durationMs: 100 });
    const b = await server.client.start({ rows: 10, durationMs: 5000 });
    await vi.advanceTimersByTimeAsync(200);
    expect((await server.client.list()).map((job) => job.code)).toEqual([b.code, a.code]);
    expect(await server.client.cancel(b.code)).toMatchObject({ status: "CANCELLED", seq: 3 });
    expect(await server.client.cancel(a.code)).toBeUndefined();
    expect(server.jobs().map((job) => [job.code, job.status])).toEqual([[b.code, "CANCELLED"]]);
  });

  it("close() stops every timer", async () => {
    server = createFakeExportServer();
    await server.client.start({ rows: 10, durationMs: 1000 });
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    server.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("the fake server's streams", () => {
  it("serves the multiplexed stream: every export of the session on one EventSource", async () => {
    server = createFakeExportServer({ client: { mode: "multiplex" } });
    const codes = [(await server.client.start({ rows: 10, durationMs: 500 })).code, (await server.client.start({ rows: 10, durationMs: 800 })).code];
    const ended: string[] = [];
    for (const code of codes) server.client.subscribe(code, (event) => event.type === "snapshot" && event.job.status === "COMPLETED" && ended.push(code));
    await vi.advanceTimersByTimeAsync(1000);
    expect(ended).toEqual(codes);
  });

  it("fails streams as the relay that gives up: events, silence, then ERROR UPSTREAM_UNAVAILABLE", async () => {
    const events = await run({ rows: 1000, durationMs: 5000 }, 4000, { relayGivesUp: { afterMs: 1000, giveUpMs: 2000 } });
    const progress = jobs(events).map((job) => job.progress);
    expect(Math.max(...progress)).toBeGreaterThan(10);
    expect(Math.max(...progress)).toBeLessThanOrEqual(20);
    expect(events.at(-1)).toMatchObject({ type: "error", error: { code: "UPSTREAM_UNAVAILABLE" } });
    expect(server.client.stats().connections).toBe(0);
  });

  it.each(["per-job", "multiplex"] as const)(
    "dropStreamAt (%s): the stream is cut once after the crossing snapshot; the EventSource reconnects after retryMs, resuming by Last-Event-ID",
    async (mode) => {
      server = createFakeExportServer({ client: { mode }, retryMs: 500 });
      const { code } = await server.client.start({ rows: 1000, durationMs: 3000, dropStreamAt: 40 });
      const seen: Job[] = [];
      const states: [ConnectionState, number][] = [];
      server.client.subscribe(code, (event) => event.type === "snapshot" && seen.push(event.job), { onConnection: (state) => states.push([state, Date.now()]) });
      await vi.advanceTimersByTimeAsync(4000);
      const cut = seen.find((job) => job.progress >= 40);
      expect(cut?.status).toBe("IN_PROGRESS");
      expect(server.streams.map((each) => each.lastEventId)).toEqual([undefined, mode === "per-job" ? String(cut?.seq) : `${code}:${cut?.seq}`]);
      const shown = states.slice(states.findIndex(([state]) => state === "open"));
      expect(shown.map(([state]) => state)).toEqual(["open", "connecting", "open"]);
      expect((shown[2]?.[1] ?? 0) - (shown[1]?.[1] ?? 0)).toBe(500);
      expect(seen.map((job) => job.seq)).toEqual([...new Set(seen.map((job) => job.seq))].sort((a, b) => a - b));
      expect(seen.at(-1)?.status).toBe("COMPLETED");
    },
  );

  it("close() also stops an EventSource waiting to reconnect after a cut", async () => {
    server = createFakeExportServer();
    const { code } = await server.client.start({ rows: 1000, durationMs: 1000, dropStreamAt: 50 });
    server.client.subscribe(code, () => {});
    await vi.advanceTimersByTimeAsync(600);
    expect(server.streams).toHaveLength(1);
    server.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("refuses the stream of an export it does not have (NOT_FOUND)", async () => {
    server = createFakeExportServer();
    const events: ExportEvent[] = [];
    server.client.subscribe("00000000-0000-4000-8000-00000000ffff", (event) => events.push(event));
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual([{ type: "error", error: expect.objectContaining({ code: "NOT_FOUND" }) }]);
  });
});
