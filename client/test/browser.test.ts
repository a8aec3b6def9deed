/**
 * The demo page in real Chromium, served by the real BFF in front of the real backend,
 * in its three modes (SSE per job, SSE multiplexed, polling every 2 s): live progress,
 * the file downloaded in the same tab, the requests each mode costs, the 8-exports case
 * that per-job SSE cannot serve on HTTP/1.1, the list restored after a reload, and the
 * BFF killed with SIGKILL under open pages (a new one started on the same address).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, BrowserContext, Locator, Page, Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientDir, launchChromium, missingForBrowser, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

// The README's picture is refreshed with UPDATE_SCREENSHOT=1 (make screenshot); other
// runs write next to the test results so a test run leaves the work tree clean.
const screenshotPath =
  process.env["UPDATE_SCREENSHOT"] === "1"
    ? join(clientDir, "..", "docs", "demo.png")
    : join(clientDir, "test-results", "demo.png");
const missing = prerequisites(
  "browser tests (Chromium + real backend + BFF)",
  missingForBrowser(),
);

type Mode = "per-job" | "multiplex" | "polling";

/** A page in a fresh browser context (a fresh session), with every request it makes. */
interface DemoPage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** `METHOD path` of every request, in order. */
  readonly requests: string[];
  readonly pageErrors: string[];
}

const SSE_RETRY_MS = 300;

describe.skipIf(missing !== undefined)("demo page in Chromium", () => {
  let servers: Servers;
  let browser: Browser;

  beforeAll(async () => {
    servers = await startServers({
      // Enough workers for eight exports at once on a small machine; a short `retry:`
      // so that a page reopening a finished stream would show within a second.
      env: { WORKERS: "16", SSE_RETRY: `${SSE_RETRY_MS}ms` },
    });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await servers?.stop();
  });

  async function openDemo(
    mode: Mode,
    viewport = { width: 1100, height: 760 },
    options: { baseUrl?: string; beforeLoad?: (context: BrowserContext, page: Page) => Promise<void> } = {},
  ): Promise<DemoPage> {
    const context = await browser.newContext({ acceptDownloads: true, viewport, deviceScaleFactor: 2 });
    const page = await context.newPage();
    const requests: string[] = [];
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("request", (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`));
    await options.beforeLoad?.(context, page);
    await page.goto(`${options.baseUrl ?? servers.bffUrl}/?mode=${mode}`);
    await expect.poll(() => page.title()).toContain("exportstream");
    expect(await page.getByTestId(`mode-${mode}`).isChecked()).toBe(true);
    return { context, page, requests, pageErrors };
  }

  async function fillForm(page: Page, rows: number, durationMs: number, failAt?: number): Promise<void> {
    await page.getByTestId("rows-input").fill(String(rows));
    await page.getByTestId("duration-input").fill(String(durationMs));
    await page.getByTestId("fail-at-input").fill(failAt === undefined ? "" : String(failAt));
  }

  async function startExport(page: Page, rows: number, durationMs: number, failAt?: number): Promise<{ item: Locator; code: string }> {
    const items = page.getByTestId("export-item");
    const before = await items.count();
    await fillForm(page, rows, durationMs, failAt);
    await page.getByTestId("start-button").click();
    await expect.poll(() => items.count()).toBe(before + 1);
    const code = (await items.first().getAttribute("data-code")) ?? "";
    expect(code).toMatch(/^[0-9a-f-]{36}$/);
    return { item: page.locator(`[data-testid="export-item"][data-code="${code}"]`), code };
  }

  function progressOf(page: Page, code: string): Promise<number> {
    return page
      .locator(`[data-code="${code}"] [role="progressbar"]`)
      .getAttribute("aria-valuenow")
      .then(Number);
  }

  async function waitForStatus(item: Locator, status: string, timeout = 20_000): Promise<void> {
    await expect.poll(() => item.getAttribute("data-status"), { timeout }).toBe(status);
  }

  /** Asserts the bar moves while the export runs: some value in (0, 100), then a higher one. */
  async function expectLiveProgress(page: Page, code: string): Promise<void> {
    let first = 0;
    await expect.poll(async () => (first = await progressOf(page, code)), { timeout: 20_000, interval: 50 }).toBeGreaterThan(0);
    expect(first).toBeLessThan(100);
    await expect.poll(() => progressOf(page, code), { timeout: 20_000, interval: 50 }).toBeGreaterThan(first);
  }

  function count(requests: readonly string[], pattern: RegExp): number {
    return requests.filter((request) => pattern.test(request)).length;
  }

  function eventsOf(code: string): RegExp {
    return new RegExp(`^GET /api/exports/${code}/events$`);
  }

  async function sha256OfDownload(download: Promise<import("playwright-core").Download>): Promise<string> {
    const file = await download;
    expect(file.suggestedFilename()).toMatch(/\.csv$/);
    return createHash("sha256").update(readFileSync(await file.path())).digest("hex");
  }

  it("per-job: live progress, the file downloaded in the same tab, one events request per export though two widgets watch it", async () => {
    const { context, page, requests, pageErrors } = await openDemo("per-job");
    const download = page.waitForEvent("download", { timeout: 30_000 });

    const { item, code } = await startExport(page, 5000, 2500);
    // The second widget ("Latest export") watches the same code through the same client.
    await expect.poll(() => page.getByTestId("spotlight-code").textContent()).toBe(code.slice(0, 8));
    await expectLiveProgress(page, code);
    await waitForStatus(item, "COMPLETED");
    expect(await item.getByTestId("percent").textContent()).toBe("100%");
    expect(await item.locator('[role="progressbar"]').getAttribute("aria-valuenow")).toBe("100");
    await expect.poll(() => page.getByTestId("spotlight").getAttribute("data-status")).toBe("COMPLETED");

    expect(await sha256OfDownload(download)).toBe(await item.getAttribute("data-sha256"));
    expect((await download).url()).toBe(`${servers.bffUrl}/api/exports/${code}/file`);
    expect(page.url()).toBe(`${servers.bffUrl}/?mode=per-job`); // same tab, no navigation away
    expect(context.pages()).toHaveLength(1); // no new window

    const failing = await startExport(page, 5000, 1000, 40);
    await waitForStatus(failing.item, "FAILED");
    expect(await failing.item.getByTestId("error-message").textContent()).toContain("GENERATION_FAILED");

    // Past the streams' `retry:` delay: a page that kept a finished stream would have reconnected.
    await page.waitForTimeout(SSE_RETRY_MS * 2 + 500);
    expect(count(requests, eventsOf(code))).toBe(1);
    expect(count(requests, eventsOf(failing.code))).toBe(1);
    expect(count(requests, /^GET \/api\/events$/)).toBe(0);
    // Streams that deliver never fetch the poller's chunk (client/src/polling.ts).
    expect(count(requests, /^GET \/chunks\/polling-[^/]+\.js$/)).toBe(0);
    expect(Number(await item.getAttribute("data-delay-ms"))).toBeLessThan(1_000);
    expect(await page.getByTestId("stat-delay").textContent()).toMatch(/^\d+(\.\d)? m?s$/);
    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it("multiplex: several exports over exactly one /api/events request for the page; cancel; reload restores the list", async () => {
    const { context, page, requests, pageErrors } = await openDemo("multiplex");
    const long = await startExport(page, 200_000, 6000);
    const short = await startExport(page, 5000, 1500);
    const failing = await startExport(page, 5000, 1000, 50);
    const cancelled = await startExport(page, 200_000, 30_000);

    await expectLiveProgress(page, short.code);
    await waitForStatus(short.item, "COMPLETED");
    await waitForStatus(failing.item, "FAILED");
    await cancelled.item.getByTestId("cancel-button").click();
    await waitForStatus(cancelled.item, "CANCELLED");
    expect(await long.item.getAttribute("data-status")).toBe("IN_PROGRESS");
    expect(await long.item.getAttribute("data-connection")).toBe("open");

    await fillForm(page, 5000, 3000);
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await page.mouse.move(0, 0);
    mkdirSync(join(clientDir, "..", "docs"), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });

    expect(count(requests, /^GET \/api\/events$/)).toBe(1);
    expect(count(requests, /\/api\/exports\/[^/]+\/events$/)).toBe(0);
    // Cross-tab sharing is a chunk of its own (client/src/crosstab-leader.ts), fetched once.
    expect(count(requests, /^GET \/chunks\/crosstab-leader-[^/]+\.js$/)).toBe(1);
    expect(Number(await page.getByTestId("stat-connections").textContent())).toBeGreaterThanOrEqual(1);

    // Reload: the session's exports come back (newest first) and the running one goes on.
    const before = await page.getByTestId("export-item").evaluateAll((nodes) => nodes.map((n) => (n as HTMLElement).dataset["code"]));
    await page.reload();
    await expect.poll(() => page.getByTestId("export-item").count()).toBe(before.length);
    const after = await page.getByTestId("export-item").evaluateAll((nodes) => nodes.map((n) => (n as HTMLElement).dataset["code"]));
    expect(after).toEqual(before);
    expect(await page.getByTestId("mode-multiplex").isChecked()).toBe(true);
    await waitForStatus(page.locator(`[data-code="${short.code}"]`), "COMPLETED");
    await waitForStatus(page.locator(`[data-code="${long.code}"]`), "COMPLETED");

    // Remove a finished export: DELETE answers 204, the item goes, and stays gone after a reload.
    await page.locator(`[data-code="${failing.code}"]`).getByTestId("cancel-button").click();
    await expect.poll(() => page.locator(`[data-code="${failing.code}"]`).count()).toBe(0);
    await page.reload();
    await expect.poll(() => page.getByTestId("export-item").count()).toBe(before.length - 1);
    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it("polling: about one GET per 2 s per export and no event stream", async () => {
    const { context, page, requests, pageErrors } = await openDemo("polling");
    const started = Date.now();
    const { item, code } = await startExport(page, 5000, 4500);
    await waitForStatus(item, "COMPLETED");
    const seconds = (Date.now() - started) / 1000;

    const polls = count(requests, new RegExp(`^GET /api/exports/${code}$`));
    expect(polls).toBeGreaterThanOrEqual(Math.floor(seconds / 2) - 1);
    expect(polls).toBeLessThanOrEqual(Math.ceil(seconds / 2) + 1);
    expect(count(requests, /\/events$/)).toBe(0);
    // Polling shows the end up to 2 s late; SSE within milliseconds.
    expect(Number(await item.getAttribute("data-delay-ms"))).toBeGreaterThan(0);
    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it("8 exports at once: per-job SSE stalls past six connections on HTTP/1.1, multiplexed SSE does not", async () => {
    async function burst(mode: Mode): Promise<{ demo: DemoPage; live: number; waiting: number }> {
      const demo = await openDemo(mode);
      await fillForm(demo.page, 400_000, 4000);
      await demo.page.getByTestId("burst-button").click();
      const items = demo.page.getByTestId("export-item");
      await expect.poll(() => items.count()).toBe(8);
      // Well into the exports' run: every followed export has had several updates.
      await demo.page.waitForTimeout(1500);
      const updates = await items.evaluateAll((nodes) => nodes.map((n) => Number((n as HTMLElement).dataset["updates"] ?? 0)));
      const connections = await items.evaluateAll((nodes) => nodes.map((n) => (n as HTMLElement).dataset["connection"]));
      return {
        demo,
        live: updates.filter((n) => n > 0).length,
        waiting: connections.filter((state) => state === "connecting").length,
      };
    }

    const perJob = await burst("per-job");
    expect(perJob.live).toBe(6);
    expect(perJob.waiting).toBe(2);
    expect(await perJob.demo.page.getByTestId("stat-waiting").textContent()).toBe("2 waiting to connect");

    const multiplex = await burst("multiplex");
    expect(multiplex.live).toBe(8);
    expect(multiplex.waiting).toBe(0);
    expect(count(multiplex.demo.requests, /^GET \/api\/events$/)).toBe(1);

    // The stalled two get their turn once the first six ended.
    for (const demo of [perJob.demo, multiplex.demo]) {
      await expect
        .poll(() => demo.page.locator('[data-testid="export-item"][data-status="COMPLETED"]').count(), { timeout: 30_000 })
        .toBe(8);
      expect(demo.pageErrors).toEqual([]);
      await demo.context.close();
    }
  });

  it("the BFF killed with SIGKILL under two pages: Chromium reconnects, resumes by Last-Event-ID, ends on the same terminal events, downloads each file once", async () => {
    // A stack of its own, since its BFF dies: every BFF of it signs sessions with the
    // same secret, so the new one knows the pages' cookies.
    const stack = await startServers({
      env: { WORKERS: "16", SSE_RETRY: `${SSE_RETRY_MS}ms`, SESSION_SECRET: "browser-restart-test-secret-0123456789" },
    });
    try {
      interface Watched {
        readonly demo: DemoPage;
        /**
         * Every event-stream request: path, Last-Event-ID, when this process saw it (ms),
         * why it failed if it did, and the request (whose timing has when the browser sent it).
         */
        readonly streams: { path: string; lastEventId: string | undefined; at: number; failed?: string; request: Request }[];
        readonly downloads: import("playwright-core").Download[];
      }
      const watch = async (mode: Mode): Promise<Watched> => {
        const streams: Watched["streams"] = [];
        const downloads: Watched["downloads"] = [];
        const demo = await openDemo(mode, undefined, {
          baseUrl: stack.bffUrl,
          beforeLoad: async (context, page) => {
            // What each EventSource of the page receives, on the object itself (it
            // survives reconnections): [lastEventId, data, when].
            await context.addInitScript(() => {
              const log: { url: string; created: number; events: [string, string, number][] }[] = [];
              (window as unknown as { __streams: typeof log }).__streams = log;
              const Native = window.EventSource;
              class Recording extends Native {
                constructor(url: string | URL, init?: EventSourceInit) {
                  super(url, init);
                  const entry = { url: this.url, created: Date.now(), events: [] as [string, string, number][] };
                  log.push(entry);
                  this.addEventListener("message", (event) => entry.events.push([event.lastEventId, String(event.data), Date.now()]));
                }
              }
              window.EventSource = Recording;
            });
            page.on("request", (request) => {
              const path = new URL(request.url()).pathname;
              if (!path.endsWith("/events")) return;
              const entry: Watched["streams"][number] = { path, lastEventId: undefined, at: Date.now(), request };
              streams.push(entry);
              // The headers as sent (headers() has only the provisional ones).
              void request.allHeaders().then((headers) => {
                entry.lastEventId = headers["last-event-id"];
              });
            });
            page.on("requestfailed", (request) => {
              const path = new URL(request.url()).pathname;
              const entry = streams.filter((stream) => stream.path === path).at(-1);
              if (entry && path.endsWith("/events")) entry.failed = request.failure()?.errorText ?? "failed";
            });
            page.on("download", (download) => downloads.push(download));
          },
        });
        return { demo, streams, downloads };
      };
      /** A request that found no server (not one the page aborted itself). */
      const refused = (failure: string | undefined): boolean => failure !== undefined && failure !== "net::ERR_ABORTED";
      const perJob = await watch("per-job");
      const multiplex = await watch("multiplex");

      // On the multiplexed page one export ends (and downloads) before the kill: the
      // new BFF sends its snapshot again, which must not download it again.
      const early = await startExport(multiplex.demo.page, 2000, 300);
      await waitForStatus(early.item, "COMPLETED");
      await expect.poll(() => multiplex.downloads.length).toBe(1);
      // Two exports per page, running when the BFF dies.
      const running = new Map<Watched, string[]>();
      for (const watched of [perJob, multiplex]) {
        const codes: string[] = [];
        for (let i = 0; i < 2; i++) codes.push((await startExport(watched.demo.page, 40_000, 5000)).code);
        running.set(watched, codes);
      }
      for (const [watched, codes] of running) {
        for (const code of codes) {
          await expect.poll(() => progressOf(watched.demo.page, code), { timeout: 20_000, interval: 50 }).toBeGreaterThan(0);
        }
      }
      for (const [watched, codes] of running) {
        for (const code of codes) {
          expect(await watched.demo.page.locator(`[data-code="${code}"]`).getAttribute("data-status")).toBe("IN_PROGRESS");
        }
      }

      const killedAt = Date.now();
      await stack.killBff();
      // Every page's streams found no BFF and are retrying before the new one starts.
      const streamPaths = (watched: Watched): string[] =>
        watched === perJob ? running.get(perJob)!.map((code) => `/api/exports/${code}/events`) : ["/api/events"];
      for (const watched of [perJob, multiplex]) {
        for (const path of streamPaths(watched)) {
          await expect
            .poll(() => watched.streams.some((stream) => stream.path === path && stream.at >= killedAt && refused(stream.failed)), {
              timeout: 10_000,
              interval: 20,
            })
            .toBe(true);
        }
      }
      await stack.restartBff();
      const restartedAt = Date.now();

      for (const [watched, codes] of running) {
        for (const code of codes) await waitForStatus(watched.demo.page.locator(`[data-code="${code}"]`), "COMPLETED", 30_000);
      }
      const completedAt = Date.now();
      await expect.poll(() => perJob.downloads.length).toBe(2);
      await expect.poll(() => multiplex.downloads.length).toBe(3);
      // Past the streams' `retry:` delay: a page that reopened a finished stream, or a
      // late duplicate, would have downloaded again by now.
      await multiplex.demo.page.waitForTimeout(SSE_RETRY_MS * 2 + 500);

      let events = 0;
      let recovered = 0;
      for (const watched of [perJob, multiplex]) {
        const { page } = watched.demo;
        const received = await page.evaluate(
          () => (window as unknown as { __streams: { url: string; created: number; events: [string, string, number][] }[] }).__streams,
        );
        // The browser reconnected its EventSources: the page constructed none after the
        // kill. (The multiplexed page closed its first one when the early export ended.)
        expect(received.filter((entry) => entry.created >= killedAt)).toEqual([]);
        const codes = [...(watched === multiplex ? [early.code] : []), ...running.get(watched)!];
        // One download per export, its bytes those the backend announced.
        expect(watched.downloads.map((download) => new URL(download.url()).pathname).sort()).toEqual(
          codes.map((code) => `/api/exports/${code}/file`).sort(),
        );
        for (const code of codes) {
          const truth = (await page.evaluate(async (path) => (await fetch(path)).json(), `/api/exports/${code}`)) as {
            status: string;
            seq: number;
            file: { sha256: string };
          };
          expect(truth.status).toBe("COMPLETED");
          const item = page.locator(`[data-code="${code}"]`);
          expect(await item.getAttribute("data-sha256")).toBe(truth.file.sha256);
          const download = watched.downloads.find((each) => each.url().endsWith(`/api/exports/${code}/file`))!;
          expect(await sha256OfDownload(Promise.resolve(download))).toBe(truth.file.sha256);

          // The stream as the page's EventSource received it, across the reconnection.
          const path = watched === perJob ? `/api/exports/${code}/events` : "/api/events";
          const mine = received
            .filter((entry) => new URL(entry.url).pathname === path)
            .flatMap((entry) => entry.events)
            .map(([id, data, at]) => ({ id, job: JSON.parse(data) as { code: string; seq: number; status: string }, at, data }))
            .filter((event) => event.job.code === code);
          events += mine.length;
          for (const event of mine) expect(event.id).toBe(watched === perJob ? String(event.job.seq) : `${code}:${event.job.seq}`);
          const terminal = mine.filter((event) => ["COMPLETED", "FAILED", "CANCELLED"].includes(event.job.status));
          if (code === early.code) {
            // Ended before the kill; the new BFF's /api/events may send its snapshot again.
            expect(new Set(terminal.map((event) => event.data)).size).toBe(1);
            expect(terminal[0]!.job.seq).toBe(truth.seq);
            continue;
          }
          expect(terminal).toHaveLength(1);
          expect(JSON.parse(terminal[0]!.data)).toEqual(truth);
          expect(mine.at(-1)).toBe(terminal[0]);
          for (let k = 1; k < mine.length; k++) {
            // Per job: resumed after Last-Event-ID, so strictly increasing. Multiplexed:
            // the new BFF starts with the current snapshot, which may repeat the last.
            if (watched === perJob) expect(mine[k]!.job.seq).toBeGreaterThan(mine[k - 1]!.job.seq);
            else expect(mine[k]!.job.seq).toBeGreaterThanOrEqual(mine[k - 1]!.job.seq);
          }
          const after = mine.find((event) => event.at >= restartedAt);
          expect(after, `${code}: no event after the new BFF started`).toBeDefined();
          recovered = Math.max(recovered, after!.at - killedAt);
        }
        // Every reconnection that reached a BFF after the kill carried the id of the
        // last event the stream had; the last one got through.
        for (const path of streamPaths(watched)) {
          const requests = watched.streams.filter((stream) => stream.path === path && stream.at >= killedAt);
          const events = received.filter((entry) => new URL(entry.url).pathname === path).at(-1)!.events;
          expect(requests.length).toBeGreaterThanOrEqual(2); // at least one refused, one through
          // The last got through (the page aborts a per-job stream itself at its end).
          expect(refused(requests.at(-1)?.failed)).toBe(false);
          // A refused request was never sent: the headers it would have had are not known.
          // Compared on the browser's clock: this process hears of a request late, when
          // events may already have arrived on it.
          for (const request of requests.filter((each) => !refused(each.failed))) {
            const sentAt = request.request.timing().startTime;
            expect(sentAt).toBeGreaterThan(0);
            expect(request.lastEventId).toBeDefined();
            expect(request.lastEventId).toBe(events.filter(([, , at]) => at <= sentAt).at(-1)?.[0]);
          }
        }
        expect(watched.demo.pageErrors).toEqual([]);
      }
      console.info(
        `BFF kill -9 (Chromium): 2 pages (per-job, multiplexed), 4 exports running at the kill + 1 finished before; ${events} events checked, lost 0; ` +
          `new BFF healthy ${restartedAt - killedAt} ms after the kill; every stream had an event again within ${recovered} ms of the kill; ` +
          `all COMPLETED ${completedAt - killedAt} ms after it; downloads: 5, one per export`,
      );
      await perJob.demo.context.close();
      await multiplex.demo.context.close();
    } finally {
      await stack.stop();
    }
  });

  it("fits a phone's width without sideways scrolling, also in a row's widest states (waiting for a connection, polling)", async () => {
    // Every event stream is held unanswered, so the row shows "waiting for a connection…"
    // with SSE however fast the machine, then, once the client falls back to polling
    // (after firstMessageMs), "polling": both with the status badge beside them.
    const { context, page } = await openDemo("multiplex", { width: 375, height: 740 }, {
      beforeLoad: async (holding) => void (await holding.route(/\/events(\?|$)/, () => {})),
    });
    await startExport(page, 1000, 30_000);
    const row = () =>
      page.evaluate(() => {
        const item = document.querySelector<HTMLElement>('[data-testid="export-item"]');
        const { connection = "", transport = "" } = item?.dataset ?? {};
        return { connection, transport, overflow: document.documentElement.scrollWidth - window.innerWidth };
      });
    /** The page's sideways overflow, measured while the row shows `connection` over `transport`. */
    const overflowWhile = async (connection: string, transport: string): Promise<number> => {
      let shown = await row();
      await expect
        .poll(async () => {
          shown = await row();
          return [shown.connection, shown.transport];
        }, { timeout: 15_000 })
        .toEqual([connection, transport]);
      return shown.overflow;
    };
    expect(await overflowWhile("connecting", "sse")).toBeLessThanOrEqual(0);
    expect(await overflowWhile("open", "polling")).toBeLessThanOrEqual(0);
    await context.close();
  });
});
